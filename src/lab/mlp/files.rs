//! The MLP's files: `model.safetensors` and PEFT adapter folders, out and in. On any error while
//! loading, nothing changes.

use super::AdapterSummary;
use crate::error::{LabError, Result};
use crate::io;
use crate::lab::settings::valid_name;
use crate::lab::Lab;
use crate::lora::Adapter;
use crate::nn::{Mlp, LAYER_NAMES, LAYER_SHAPES};
use crate::svd;

impl Lab {
    /// The base as it is held (see `export_model_as` for the other forms).
    pub fn export_model(&self) -> Result<Vec<u8>> {
        self.export_model_as(crate::lab::BaseForm::Held)
    }

    /// Loads a base model; on any error the current model and adapters are untouched.
    pub fn import_model(&mut self, bytes: &[u8]) -> Result<usize> {
        self.ensure_idle()?;
        let model = io::import_model(bytes)?;
        let n = model.num_params();
        self.mlp.models.set_base(model);
        Ok(n)
    }

    pub fn export_adapter(&self, name: &str) -> Result<io::AdapterFiles> {
        io::export_adapter(self.mlp.models.get(name)?, self.require_base()?)
    }

    /// Loads an adapter for the current base under `name` (replacing one of that name) and makes it
    /// active. A PiSSA adapter's residual base (`base_model`) is turned back into the frozen factors
    /// relative to the current base. On any error nothing changes.
    pub fn import_adapter(
        &mut self,
        name: &str,
        safetensors: &[u8],
        config_json: &str,
        base_model: Option<&[u8]>,
    ) -> Result<AdapterSummary> {
        self.ensure_idle()?;
        let name = valid_name(name)?;
        let base = self.require_base()?;
        let mut adapter = io::import_adapter(&name, safetensors, config_json, base)?;
        if let Some(bytes) = base_model {
            let residual = io::import_model(bytes)?;
            attach_residual(&mut adapter, base, &residual)?;
        }
        let summary = AdapterSummary::new(&adapter, base.num_params(), None);
        self.mlp.models.install(adapter);
        Ok(summary)
    }
}

/// Gives a loaded adapter the frozen factors of a PiSSA residual: `residual − base` must be a change
/// of rank r on each adapted layer (−s·B₀·A₀), recovered by SVD; elsewhere the two must agree. Both
/// sides are the weights the models compute with (a 4-bit base's dequantised weights).
fn attach_residual(adapter: &mut Adapter, base: &Mlp, residual: &Mlp) -> Result<()> {
    let file = io::MODEL_FILE;
    for (i, (name, (wb, wr))) in LAYER_NAMES.iter().zip(base.layers.iter().zip(&residual.layers)).enumerate() {
        let targeted = adapter.layer(i).is_some();
        if wb.bias != wr.bias || (!targeted && wb.dense_weight() != wr.dense_weight()) {
            return Err(LabError::file(
                file,
                format!("{name} differs from the current base model; a PiSSA residual may only change the adapted layers' weights"),
            ));
        }
    }
    for l in &mut adapter.layers {
        let (fan_in, fan_out) = LAYER_SHAPES[l.layer];
        let (wr, wb) = (residual.layers[l.layer].dense_weight(), base.layers[l.layer].dense_weight());
        let d: Vec<f32> = wr.iter().zip(wb.iter()).map(|(r, b)| r - b).collect();
        let norm = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() as f32;
        if norm == 0.0 {
            continue;
        }
        let lr = svd::low_rank(&d, fan_out, fan_in, l.rank)?;
        if lr.error > 1e-3 * norm + 1e-5 {
            return Err(LabError::file(
                file,
                format!(
                    "{} differs from the current base by more than a rank-{} change: load it as the base model instead",
                    LAYER_NAMES[l.layer], l.rank
                ),
            ));
        }
        // d = −s·B₀·A₀ with lora_B ← A (out×r), lora_A ← B (r×in): B₀ = −A/√s, A₀ = B/√s.
        let k = 1.0 / l.scaling.sqrt();
        let a0 = lr.b.iter().map(|v| v * k).collect();
        let b0 = lr.a.iter().map(|v| -v * k).collect();
        l.residual = Some((a0, b0));
    }
    Ok(())
}
