//! Evaluation: accuracy on digits 0–7, 8–9 and all ten, per class, and the confusion matrix.

use crate::data::{fill_batch, Dataset};
use crate::error::Result;
use crate::nn::{argmax_rows, Activations, LayerDelta, Mlp, CLASSES};

const EVAL_BATCH: usize = 500;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    #[serde(rename = "acc_0_7")]
    pub acc_0_7: f64,
    #[serde(rename = "acc_8_9")]
    pub acc_8_9: f64,
    #[serde(rename = "acc_all")]
    pub acc_all: f64,
    /// Accuracy of each digit (NaN where the set has none of it).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u32>>,
}

impl Metrics {
    pub fn from_confusion(confusion: Vec<Vec<u32>>) -> Self {
        let acc = |digits: std::ops::Range<usize>| {
            let (mut right, mut all) = (0u64, 0u64);
            for d in digits {
                right += confusion[d][d] as u64;
                all += confusion[d].iter().map(|&c| c as u64).sum::<u64>();
            }
            if all == 0 {
                f64::NAN
            } else {
                right as f64 / all as f64
            }
        };
        Self {
            acc_0_7: acc(0..8),
            acc_8_9: acc(8..10),
            acc_all: acc(0..10),
            per_class: (0..CLASSES).map(|d| acc(d..d + 1)).collect(),
            confusion,
        }
    }
}

/// Runs `mlp` (with `delta` added where active) over the samples `indices` of `ds`.
pub fn evaluate(mlp: &Mlp, mut delta: Option<&mut dyn LayerDelta>, ds: &Dataset, indices: &[u32]) -> Result<Metrics> {
    let mut confusion = vec![vec![0u32; CLASSES]; CLASSES];
    let mut acts = Activations::new(EVAL_BATCH);
    let mut labels = vec![0u8; EVAL_BATCH];
    for chunk in indices.chunks(EVAL_BATCH) {
        acts.resize(chunk.len());
        labels.resize(chunk.len(), 0);
        fill_batch(ds, chunk, acts.input_mut(), &mut labels)?;
        mlp.forward(&mut acts, delta.as_mut().map(|d| &mut **d as &mut dyn LayerDelta));
        for (pred, &label) in argmax_rows(acts.logits(), CLASSES).zip(&labels) {
            confusion[label as usize][pred] += 1;
        }
    }
    Ok(Metrics::from_confusion(confusion))
}
