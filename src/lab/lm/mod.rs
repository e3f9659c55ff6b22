//! The language model, part 2 (the article's last section): a tiny Llama trained on English words,
//! adapted with LoRA to Pokémon names, first names or a person's own lines, evaluated on held-out
//! lines, sampled, scored byte by byte. Settings are in `settings.rs`, files in `files.rs`; the
//! per-epoch checkpoints are the lab's `checkpoints.rs`. Operations are the lab's `lm_*` methods.

mod files;
mod settings;

pub use super::checkpoints::CheckpointInfo;
pub use settings::{DataChoice, LmAdapterSettings, LmBaseSettings};

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use super::adapters::{AdaptedModel, AdapterList};
use super::settings::loss_hash;
use super::{heap, Lab};
use crate::error::{LabError, Result};
use crate::lm::{eval, Llama, LmConfig, Sampling};
use crate::lora::targets::TargetModules;
use crate::lora::{Adaptable, Adapter};
use crate::nn::LayerDelta;
use crate::rng::{Rng, Stream};
use crate::text::{self, Blocks, Corpus};
use crate::train::{LmAdapterObjective, LmAdapterState, LmBaseObjective, LmBaseState, Progress, Trainer};
use super::checkpoints::Checkpoints;

/// What the lab remembers of an adapter beyond its weights.
#[derive(Clone, Debug)]
struct AdapterMeta {
    data: DataChoice,
    target_modules: TargetModules,
}

enum LmRun {
    Base {
        trainer: Trainer,
        model: Box<Llama>,
        state: Box<LmBaseState>,
        blocks: Blocks,
        held_out: Vec<Vec<u16>>,
    },
    Adapter {
        trainer: Trainer,
        adapter: Box<Adapter>,
        state: Box<LmAdapterState>,
        blocks: Blocks,
        held_out: Vec<Vec<u16>>,
        meta: AdapterMeta,
        load_best: bool,
        /// The held-out loss with the adapter off (the frozen base), measured at the first epoch's end.
        base_loss: Option<f64>,
    },
}

/// The language model's part of the lab's state.
#[derive(Default)]
pub(super) struct LmRoom {
    words: Option<Corpus>,
    pokemon: Option<Corpus>,
    names: Option<Corpus>,
    pub(in crate::lab) models: AdaptedModel<Llama>,
    meta: BTreeMap<String, AdapterMeta>,
    run: Option<LmRun>,
    checkpoints: Checkpoints,
}

impl LmRoom {
    pub(super) fn is_training(&self) -> bool {
        self.run.is_some()
    }
}

/// Progress of an LM run: the trainer's, tokens per second, and the held-out loss when an epoch
/// closed (with the adapter on, and for an adapter run the base's too: the adapter off).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LmProgress {
    #[serde(flatten)]
    pub progress: Progress,
    pub tokens_per_sec: f64,
    pub eval_loss: Option<f64>,
    /// An adapter run's held-out loss with the adapter off, when an epoch closed.
    pub base_eval_loss: Option<f64>,
    pub checkpoint: Option<CheckpointInfo>,
}

/// Samples taken between a run's steps: from the base (for a base run, the model being trained) and,
/// for an adapter run, from the base with the adapter as trained so far.
#[derive(Clone, Debug, Serialize)]
pub struct RunSamples {
    pub base: Vec<String>,
    pub adapted: Option<Vec<String>>,
}

/// A person's own lines, checked and split as an adapter run would use them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    pub lines: Vec<String>,
    pub train: usize,
    pub held_out: usize,
    /// The first few held-out lines, to show what is kept back.
    pub held_out_first: Vec<String>,
}

/// What `trainBase` and `trainAdapter` resolve with.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LmRunSummary {
    pub name: Option<String>,
    pub epochs: usize,
    pub steps: usize,
    pub seconds: f64,
    pub tokens_per_sec: f64,
    pub cancelled: bool,
    /// Held-out loss after each epoch (nats per predicted token).
    pub eval_loss: Vec<f64>,
    pub trainable_params: usize,
    pub total_params: usize,
    pub trainable_percent: f64,
    pub report: String,
    /// FNV-1a of every batch loss's bits: equal runs have equal hashes.
    pub loss_hash: String,
}

/// Held-out losses of `evaluate`: the English words and the active adapter's data.
#[derive(Clone, Debug, Serialize)]
pub struct LmEvaluation {
    pub base: BTreeMap<String, f64>,
    pub adapted: Option<BTreeMap<String, f64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Score {
    pub bytes: Vec<u8>,
    pub base: Vec<f32>,
    pub adapted: Option<Vec<f32>>,
}

impl Lab {
    /// Parses the three corpora (an-array-of-english-words' index.json, pokemon's en.json, the first
    /// names' names.txt) → their line counts; on any error nothing changes. Grows the wasm memory to
    /// `heap::LM_HEAP_BYTES` in one step.
    pub fn lm_load_data(&mut self, words: &[u8], pokemon: &[u8], names: &[u8]) -> Result<[usize; 3]> {
        let (w, p, n) = (Corpus::english_words(words)?, Corpus::pokemon(pokemon)?, Corpus::first_names(names)?);
        let count = |c: &Corpus| c.train.len() + c.held_out.len();
        let counts = [count(&w), count(&p), count(&n)];
        let room = &mut self.lm;
        (room.words, room.pokemon, room.names) = (Some(w), Some(p), Some(n));
        // The language model's runs come next: grow the memory for them at once (see `heap`).
        heap::reserve(heap::LM_HEAP_BYTES);
        Ok(counts)
    }

    /// The loaded corpus `data` names, or a person's lines parsed and split.
    fn lm_corpus(&self, data: &DataChoice) -> Result<Cow<'_, Corpus>> {
        let missing = || LabError::state("the text corpora are not loaded yet");
        match data {
            DataChoice::Named(n) if n == "pokemon" => self.lm.pokemon.as_ref().map(Cow::Borrowed).ok_or_else(missing),
            DataChoice::Named(n) if n == "names" => self.lm.names.as_ref().map(Cow::Borrowed).ok_or_else(missing),
            DataChoice::Named(n) => Err(LabError::setting("data", format!("unknown data \"{n}\""))),
            DataChoice::Lines { lines } => Corpus::user(lines.join("\n").as_bytes()).map(Cow::Owned),
        }
    }

    /// Checks a person's own data (a file's bytes or a text box's UTF-8) as an adapter run would: at
    /// most 1 MB, UTF-8, at least 2 lines and one training block; → its lines and split.
    pub fn lm_user_data(&self, bytes: &[u8]) -> Result<UserData> {
        let lines = text::user_lines(bytes)?;
        let corpus = Corpus::user(bytes)?;
        let held_out_first = corpus.held_out.iter().take(5).cloned().collect();
        Ok(UserData { lines, train: corpus.train.len(), held_out: corpus.held_out.len(), held_out_first })
    }

    fn lm_words(&self) -> Result<&Corpus> {
        self.lm.words.as_ref().ok_or_else(|| LabError::state("the text corpora are not loaded yet"))
    }

    pub fn lm_is_training(&self) -> bool {
        self.lm.is_training()
    }

    pub fn lm_base(&self) -> Option<&Llama> {
        self.lm.models.base()
    }

    pub(super) fn lm_require_base(&self) -> Result<&Llama> {
        self.lm
            .models
            .require_base()
            .map_err(|_| LabError::state("there is no language model yet: train or load one first"))
    }

    /// Starts training a fresh base model (HF's init) on the English training words (the first
    /// `limit` of them when given). Nothing changes if a setting is bad.
    pub fn lm_start_base(&mut self, settings: &LmBaseSettings) -> Result<()> {
        self.ensure_idle()?;
        self.refuse_quantized_lm_training()?;
        let (cfg, limit) = settings.resolve()?;
        let words = self.lm_words()?;
        let lines = &words.train[..limit.map_or(words.train.len(), |l| l.min(words.train.len()))];
        let model_cfg = LmConfig::tiny();
        let blocks = text::pack(lines, model_cfg.context)?;
        let held_out = text::eval_sequences(&words.held_out, model_cfg.context);
        let model = Llama::new(model_cfg, cfg.train.seed);
        let state = Box::new(LmBaseState::new(&model, cfg.weight_decay));
        let indices = (0..blocks.len() as u32).collect();
        let trainer = Trainer::new(cfg.train, indices, Stream::BaseShuffle, self.trainer_clock())?;
        self.lm.checkpoints.clear();
        self.lm.run = Some(LmRun::Base { trainer, model: Box::new(model), state, blocks, held_out });
        Ok(())
    }

    /// Starts training an adapter over the frozen base on its data's training lines, packed.
    pub fn lm_start_adapter(&mut self, settings: &LmAdapterSettings) -> Result<()> {
        self.ensure_idle()?;
        let base = self.lm_require_base()?;
        let plan = settings.resolve(&base.modules())?;
        let corpus = self.lm_corpus(&plan.data)?;
        let context = base.cfg.context;
        let blocks = text::pack(&corpus.train, context)?;
        let held_out = text::eval_sequences(&corpus.held_out, context);
        let seed = plan.train.train.seed;
        let mut adapter = Adapter::new(&plan.name, plan.lora, base, seed)?;
        adapter.set_training(Some(seed));
        let state = Box::new(LmAdapterState::new(&adapter, plan.train.weight_decay));
        let indices = (0..blocks.len() as u32).collect();
        let trainer = Trainer::new(plan.train.train.clone(), indices, Stream::AdapterShuffle, self.trainer_clock())?;
        let meta = AdapterMeta { data: plan.data, target_modules: plan.target_modules };
        self.lm.checkpoints.clear();
        self.lm.run = Some(LmRun::Adapter {
            trainer,
            adapter: Box::new(adapter),
            state,
            blocks,
            held_out,
            meta,
            load_best: plan.load_best,
            base_loss: None,
        });
        Ok(())
    }

    /// Runs up to `n_batches` of the LM run; when an epoch closes, evaluates on the held-out lines and
    /// keeps a checkpoint. On a non-finite loss the run ends with an error, keeping the last good step.
    pub fn lm_train_step(&mut self, n_batches: usize) -> Result<LmProgress> {
        let room = &mut self.lm;
        let result = match room.run.as_mut() {
            None => return Err(LabError::state("no language-model run in progress")),
            Some(LmRun::Base { trainer, model, state, blocks, held_out }) => {
                trainer.step(&mut LmBaseObjective { model, state }, blocks, n_batches).and_then(|p| {
                    let eval = p.epoch_finished.then(|| eval::held_out_loss(model, held_out, None)).transpose()?;
                    let cp = eval.map(|loss| room.checkpoints.add_base(p.epoch, p.step, loss, model, false));
                    Ok((p, eval, None, cp, blocks.block_len()))
                })
            }
            Some(LmRun::Adapter { trainer, adapter, state, blocks, held_out, load_best, base_loss, .. }) => {
                let base = room.models.base().ok_or_else(|| LabError::state("the language model is gone"))?;
                trainer.step(&mut LmAdapterObjective { base, adapter, state }, blocks, n_batches).and_then(|p| {
                    let eval = if p.epoch_finished {
                        // Evaluation is deterministic: no dropout while measuring.
                        let rng = adapter.take_training();
                        let loss = eval::held_out_loss(base, held_out, Some(&mut **adapter));
                        adapter.restore_training(rng);
                        // The base is frozen: its loss is the same every epoch.
                        if base_loss.is_none() {
                            *base_loss = Some(eval::held_out_loss(base, held_out, None)?);
                        }
                        Some(loss?)
                    } else {
                        None
                    };
                    let cp = eval.map(|loss| room.checkpoints.add_adapter(p.epoch, p.step, loss, adapter, *load_best));
                    let off = eval.and(*base_loss);
                    Ok((p, eval, off, cp, blocks.block_len()))
                })
            }
        };
        match result {
            Ok((progress, eval_loss, base_eval_loss, checkpoint, block)) => {
                let tokens_per_sec = progress.samples_per_sec * block as f64;
                Ok(LmProgress { progress, tokens_per_sec, eval_loss, base_eval_loss, checkpoint })
            }
            Err(e) => {
                self.lm_finish(true)?;
                Err(e)
            }
        }
    }

    /// Ends the LM run and keeps its model (the whole run, or, `cancelled`, the last completed step;
    /// with `load_best`, the best epoch's adapter). A new base drops the adapters of the old one.
    pub fn lm_finish(&mut self, cancelled: bool) -> Result<LmRunSummary> {
        let Some(run) = self.lm.run.take() else { return Err(LabError::state("no language-model run in progress")) };
        let eval_loss = self.lm.checkpoints.losses();
        let summary =
            |t: &Trainer, block: usize, name: Option<String>, trainable: usize, total: usize, report: String| {
                LmRunSummary {
                    name,
                    epochs: t.config().epochs,
                    steps: t.losses().len(),
                    seconds: t.seconds(),
                    tokens_per_sec: t.samples_per_sec() * block as f64,
                    cancelled,
                    eval_loss: eval_loss.clone(),
                    trainable_params: trainable,
                    total_params: total,
                    trainable_percent: 100.0 * trainable as f64 / total.max(1) as f64,
                    report,
                    loss_hash: loss_hash(t.losses()),
                }
            };
        match run {
            LmRun::Base { trainer, model, blocks, .. } => {
                let n = model.num_params();
                let s = summary(&trainer, blocks.block_len(), None, n, n, String::new());
                self.lm.models.set_base(*model);
                self.lm.meta.clear();
                Ok(s)
            }
            LmRun::Adapter { trainer, mut adapter, blocks, meta, load_best, .. } => {
                if load_best {
                    if let Some(best) = self.lm.checkpoints.best_adapter() {
                        *adapter = best;
                    }
                }
                adapter.set_training(None);
                let t = adapter.trainable_params();
                let total = self.lm_require_base()?.all_params_with(t);
                let report = adapter.trainable_report(total);
                let s = summary(&trainer, blocks.block_len(), Some(adapter.name.clone()), t, total, report);
                self.lm.meta.insert(adapter.name.clone(), meta);
                self.lm.models.install(*adapter);
                Ok(s)
            }
        }
    }

    /// Held-out loss of the base and of the active adapter, on the English words and on the active
    /// adapter's data (Pokémon names when no adapter is on; the words alone for an adapter whose data
    /// is unknown).
    pub fn lm_evaluate(&mut self) -> Result<LmEvaluation> {
        self.ensure_idle()?;
        let context = self.lm_require_base()?.cfg.context;
        let data = self
            .lm
            .models
            .active()
            .and_then(|a| self.lm.meta.get(a))
            .map_or(DataChoice::Named("pokemon".into()), |m| m.data.clone());
        let data_name = match &data {
            DataChoice::Named(n) => n.clone(),
            DataChoice::Lines { .. } => "user".to_string(),
        };
        let mut sets = vec![("words".to_string(), text::eval_sequences(&self.lm_words()?.held_out, context))];
        if data != DataChoice::unknown() {
            sets.push((data_name, text::eval_sequences(&self.lm_corpus(&data)?.held_out, context)));
        }
        let base = self.lm_require_base()?;
        let mut base_losses = BTreeMap::new();
        for (name, seqs) in &sets {
            base_losses.insert(name.clone(), eval::held_out_loss(base, seqs, None)?);
        }
        let adapted = self
            .lm
            .models
            .with_adapted(|m, mut d| {
                let mut out = BTreeMap::new();
                for (name, seqs) in &sets {
                    out.insert(
                        name.clone(),
                        eval::held_out_loss(m, seqs, d.as_mut().map(|d| &mut **d as &mut dyn LayerDelta))?,
                    );
                }
                Ok::<_, LabError>(out)
            })
            .transpose()?;
        Ok(LmEvaluation { base: base_losses, adapted })
    }

    /// `n` samples from BOS at `temperature` (0: greedy) among the `top_k` likeliest bytes, from `seed`;
    /// with the active adapter when `adapted` (and one is on).
    pub fn lm_generate(&mut self, n: usize, sampling: Sampling, seed: u64, adapted: bool) -> Result<Vec<String>> {
        self.ensure_idle()?;
        if n == 0 || n > 256 {
            return Err(LabError::setting("n", format!("{n} is not a count from 1 to 256")));
        }
        let bos = self.lm_require_base()?.cfg.bos;
        let prompts = vec![vec![bos]; n];
        let mut rng = Rng::new(seed, Stream::Sample);
        let seqs = if adapted {
            self.lm.models.with_adapted(|m, d| m.generate(&prompts, sampling, &mut rng, d))
        } else {
            None
        };
        let seqs = match seqs {
            Some(s) => s?,
            None => self.lm_require_base()?.generate(&prompts, sampling, &mut rng, None)?,
        };
        Ok(seqs.iter().map(|s| text::decode(s)).collect())
    }

    /// `n` samples of the run in progress, between its steps (the page shows them after each epoch),
    /// as `lm_generate` draws them: for a base run from the model being trained; for an adapter run
    /// from the frozen base and from the base with the adapter so far (no dropout), each from `seed`.
    /// The run itself is left as it was.
    pub fn lm_run_samples(&mut self, n: usize, sampling: Sampling, seed: u64) -> Result<RunSamples> {
        if n == 0 || n > 256 {
            return Err(LabError::setting("n", format!("{n} is not a count from 1 to 256")));
        }
        let decode = |seqs: Vec<Vec<u32>>| seqs.iter().map(|s| text::decode(s)).collect::<Vec<_>>();
        let room = &mut self.lm;
        match room.run.as_mut() {
            None => Err(LabError::state("no language-model run in progress")),
            Some(LmRun::Base { model, .. }) => {
                let prompts = vec![vec![model.cfg.bos]; n];
                let seqs = model.generate(&prompts, sampling, &mut Rng::new(seed, Stream::Sample), None)?;
                Ok(RunSamples { base: decode(seqs), adapted: None })
            }
            Some(LmRun::Adapter { adapter, .. }) => {
                let base = room.models.base().ok_or_else(|| LabError::state("the language model is gone"))?;
                let prompts = vec![vec![base.cfg.bos]; n];
                let plain = base.generate(&prompts, sampling, &mut Rng::new(seed, Stream::Sample), None)?;
                let rng = adapter.take_training();
                let adapted =
                    base.generate(&prompts, sampling, &mut Rng::new(seed, Stream::Sample), Some(&mut **adapter));
                adapter.restore_training(rng);
                Ok(RunSamples { base: decode(plain), adapted: Some(decode(adapted?)) })
            }
        }
    }

    /// Logits (ids.len() × vocab) for the ids given, with the active adapter when `adapted`.
    pub fn lm_logits(&mut self, ids: &[u16], adapted: bool) -> Result<Vec<f32>> {
        let ids: &[u32] = &ids.iter().map(|&t| u32::from(t)).collect::<Vec<_>>();
        let mut acts = crate::lm::LmActivations::for_inference();
        if adapted {
            if let Some(r) = self.lm.models.with_adapted(|m, d| m.forward(ids, 1, ids.len(), &mut acts, d)) {
                r?;
                return Ok(acts.logits);
            }
        }
        self.lm_require_base()?.forward(ids, 1, ids.len(), &mut acts, None)?;
        Ok(acts.logits)
    }

    /// Log-probability of each byte of `text` and of the closing EOS, after BOS, under the base and the
    /// active adapter.
    pub fn lm_score(&mut self, text: &str) -> Result<Score> {
        let base = self.lm_require_base()?;
        let ids = text::encode_line(text);
        if ids.len() > base.cfg.context {
            return Err(LabError::setting(
                "text",
                format!("{} bytes is more than the {} the model reads at once", text.len(), base.cfg.context - 2),
            ));
        }
        let ids: Vec<u32> = ids.into_iter().map(u32::from).collect();
        let b = eval::token_log_probs(base, &ids, None)?;
        let adapted = self.lm.models.with_adapted(|m, d| eval::token_log_probs(m, &ids, d)).transpose()?;
        Ok(Score { bytes: text.as_bytes().to_vec(), base: b, adapted })
    }

    pub fn lm_adapters(&self) -> AdapterList {
        self.lm.models.list()
    }

    pub fn lm_set_active(&mut self, name: Option<&str>) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.lm.models.set_active(name)
    }

    pub fn lm_merge(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.lm.models.merge(name)
    }

    pub fn lm_unmerge(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        self.lm.models.unmerge(name)
    }

    pub fn lm_delete_adapter(&mut self, name: &str) -> Result<AdapterList> {
        self.ensure_idle()?;
        let list = self.lm.models.delete(name)?;
        self.lm.meta.remove(name);
        Ok(list)
    }
}
