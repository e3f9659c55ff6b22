//! A checkpoint each epoch, as `TrainingArguments(save_strategy="epoch", save_total_limit=2)` keeps
//! them: the last two, plus the best by held-out loss when `load_best_model_at_end` protects it. The
//! language model's runs (part 2) and the pretrained model's (part 3) keep theirs here.

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lm::Llama;
use crate::lora::Adapter;

/// TrainingArguments' `save_total_limit` in the article's recipe.
pub const SAVE_TOTAL_LIMIT: usize = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// Given by the lab (a checkpoint put back after a reload gets a new one).
    #[serde(default)]
    pub id: usize,
    /// The adapter's name, or `None` for a checkpoint of the base model.
    pub adapter: Option<String>,
    pub epoch: usize,
    pub step: usize,
    pub eval_loss: f64,
    /// The lowest held-out loss of the run so far.
    pub best: bool,
}

#[derive(Clone)]
pub(in crate::lab) enum Saved {
    Base(Box<Llama>),
    Adapter(Box<Adapter>),
}

#[derive(Default)]
pub(in crate::lab) struct Checkpoints {
    next_id: usize,
    kept: Vec<(CheckpointInfo, Saved)>,
    /// Every epoch's held-out loss this run, kept or rotated out.
    losses: Vec<f64>,
}

impl Checkpoints {
    /// Forgets the previous run's checkpoints (a new run starts).
    pub fn clear(&mut self) {
        self.kept.clear();
        self.losses.clear();
    }

    pub fn losses(&self) -> Vec<f64> {
        self.losses.clone()
    }

    fn add(
        &mut self,
        epoch: usize,
        step: usize,
        eval_loss: f64,
        adapter: Option<String>,
        saved: Saved,
        keep_best: bool,
    ) -> CheckpointInfo {
        let best = self.losses.iter().all(|&l| eval_loss < l);
        self.losses.push(eval_loss);
        if best {
            self.kept.iter_mut().for_each(|(i, _)| i.best = false);
        }
        let info = CheckpointInfo { id: self.next_id, adapter, epoch, step, eval_loss, best };
        self.next_id += 1;
        self.kept.push((info.clone(), saved));
        // Rotate the oldest out, sparing the best when it is protected: save_total_limit in all, as
        // transformers' rotation keeps the best and the newest.
        while self.kept.len() > SAVE_TOTAL_LIMIT {
            let Some(i) = self.kept.iter().position(|(c, _)| !(keep_best && c.best)) else { break };
            self.kept.remove(i);
        }
        info
    }

    pub fn add_base(&mut self, epoch: usize, step: usize, loss: f64, model: &Llama, keep_best: bool) -> CheckpointInfo {
        self.add(epoch, step, loss, None, Saved::Base(Box::new(model.clone())), keep_best)
    }

    pub fn add_adapter(
        &mut self,
        epoch: usize,
        step: usize,
        loss: f64,
        adapter: &Adapter,
        keep_best: bool,
    ) -> CheckpointInfo {
        let mut a = adapter.clone();
        a.set_training(None);
        self.add(epoch, step, loss, Some(adapter.name.clone()), Saved::Adapter(Box::new(a)), keep_best)
    }

    /// Keeps a checkpoint saved earlier (the page's storage, after a reload) beside the kept ones,
    /// under a new id, as it was: no rotation, its `best` mark as saved.
    pub fn put_back(&mut self, info: &CheckpointInfo, saved: Saved) -> CheckpointInfo {
        let info = CheckpointInfo { id: self.next_id, ..info.clone() };
        self.next_id += 1;
        self.kept.push((info.clone(), saved));
        info
    }

    /// A kept checkpoint, borrowed.
    pub fn find(&self, id: usize) -> Result<&(CheckpointInfo, Saved)> {
        self.kept.iter().find(|(i, _)| i.id == id).ok_or_else(|| {
            LabError::state(format!("there is no checkpoint {id}; the kept ones are listed by checkpoints()"))
        })
    }

    /// The best kept adapter checkpoint, if the best is kept.
    pub fn best_adapter(&self) -> Option<Adapter> {
        self.kept.iter().find(|(i, _)| i.best).and_then(|(_, s)| match s {
            Saved::Adapter(a) => Some((**a).clone()),
            Saved::Base(_) => None,
        })
    }

    pub fn list(&self) -> Vec<CheckpointInfo> {
        self.kept.iter().map(|(i, _)| i.clone()).collect()
    }

    pub fn get(&self, id: usize) -> Result<Saved> {
        self.find(id).map(|(_, s)| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::LmConfig;
    use crate::lora::{Bias, Init, LoraConfig, Scaling};

    fn adapter() -> Adapter {
        let cfg =
            LmConfig { hidden: 8, intermediate: 8, layers: 1, heads: 2, head_dim: 4, context: 8, ..LmConfig::tiny() };
        let base = Llama::new(cfg, 1);
        let lora = LoraConfig {
            targets: vec![0],
            rank: 1,
            alpha: 1.0,
            scaling: Scaling::Peft,
            dropout: 0.0,
            bias: Bias::None,
            init: Init::Default,
        };
        Adapter::new("a", lora, &base, 1).unwrap()
    }

    fn epochs_kept(losses: &[f64], keep_best: bool) -> (Vec<usize>, Vec<usize>) {
        let (a, mut c) = (adapter(), Checkpoints::default());
        for (e, &l) in losses.iter().enumerate() {
            c.add_adapter(e + 1, 10 * (e + 1), l, &a, keep_best);
        }
        let kept = c.list();
        (kept.iter().map(|i| i.epoch).collect(), kept.iter().filter(|i| i.best).map(|i| i.epoch).collect())
    }

    #[test]
    fn the_last_two_are_kept_or_the_best_and_the_newest() {
        let losses = [3.0, 2.0, 2.5, 2.6];
        assert_eq!(epochs_kept(&losses, false), (vec![3, 4], vec![]), "the best (epoch 2) rotated out");
        assert_eq!(epochs_kept(&losses, true), (vec![2, 4], vec![2]), "transformers keeps the best and the newest");
        assert_eq!(epochs_kept(&[3.0, 2.0, 1.0], true), (vec![2, 3], vec![3]), "the newest is the best");
        assert_eq!(epochs_kept(&[3.0, 2.0, 1.0], false), (vec![2, 3], vec![3]));
    }
}
