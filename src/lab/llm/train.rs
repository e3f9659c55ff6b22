//! Fine-tuning the pretrained model as TRL's `SFTTrainer` does (the article's last snippet): the data
//! read as TRL takes it, an adapter trained over the frozen base held in its quantised blocks, the
//! held-out loss before and after each epoch, greedy exact match of held-out completions, the run
//! stepped, paused and cancelled like the other runs.

use serde::Serialize;

use super::pretrained::Pretrained;
use super::settings::{LlmAdapterPlan, LlmAdapterSettings, LlmData, PackingStrategy};
use super::LlmRoom;
use crate::error::{LabError, Result};
use crate::lab::checkpoints::{CheckpointInfo, Saved};
use crate::lab::settings::loss_hash;
use crate::lab::Lab;
use crate::lm::{GenerateOptions, Sampling, SftActivations};
use crate::lora::{Adaptable, Adapter};
use crate::nn::LayerDelta;
use crate::rng::{Rng, Stream};
use crate::text::{encode_sft, pack_sft, pack_sft_bfd, parse_sft_jsonl, Content, SftKind, SftRow, SftTokenizer};
use crate::train::{Progress, SftData, SftObjective, SftState, Trainer};

/// TrainingArguments' `per_device_eval_batch_size` in the reference run.
pub const EVAL_BATCH: usize = 8;
/// New tokens an exact-match answer may take (the reference's `max_new_tokens`).
pub const ANSWER_TOKENS: usize = 16;
/// Prompts generated at once when they have the same length.
const ANSWER_BATCH: usize = 16;

/// A held-out prompt and the completion it should get, for exact match.
#[derive(Clone, Debug)]
pub(super) struct Question {
    pub prompt: Vec<u32>,
    /// The prompt as a person reads it: its text, or a conversation's last user message.
    pub prompt_text: String,
    pub expected: String,
}

/// A data set made ready for one model.
pub(super) struct Prepared {
    pub train: SftData,
    /// The 1-based line of the training file each training sequence starts at.
    pub train_lines: Vec<usize>,
    pub held_out: SftData,
    pub questions: Vec<Question>,
    pub held_out_lines: Vec<usize>,
    pub truncated: usize,
    pub train_rows: usize,
    /// The training rows' form.
    pub format: SftFormat,
}

/// A data set's form, as TRL names its dataset types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SftFormat {
    /// `{"prompt", "completion"}`: strings, or message lists.
    PromptCompletion,
    /// `{"messages"}`.
    Messages,
    /// `{"text"}`.
    Text,
}

impl SftFormat {
    fn of(kind: &SftKind) -> Self {
        match kind {
            SftKind::PromptCompletion { .. } => Self::PromptCompletion,
            SftKind::Messages(_) => Self::Messages,
            SftKind::Text(_) => Self::Text,
        }
    }
}

/// What an adapter remembers besides its weights.
#[derive(Clone, Debug)]
pub(super) struct AdapterMeta {
    pub plan: LlmAdapterPlan,
    /// 1-based lines of the training file it held out (empty when a held-out file was given).
    pub held_out_lines: Vec<usize>,
    /// The base was held in NF4 when it was trained or loaded.
    pub nf4: Option<Nf4Base>,
}

/// A base held in NF4 (QLoRA), as `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
/// bnb_4bit_use_double_quant=double_quant)` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Nf4Base {
    pub double_quant: bool,
}

pub(super) struct LlmRun {
    trainer: Trainer,
    adapter: Box<Adapter>,
    state: Box<SftState>,
    data: Prepared,
    plan: LlmAdapterPlan,
    eval_before: Option<f64>,
    eval_loss: Vec<f64>,
    /// Whether each epoch's end also measures the exact match (the setting `exactMatchEachEpoch`).
    exact_match_each_epoch: bool,
    exact_match: Vec<f64>,
}

/// An adapter's parameters as PEFT's `print_trainable_parameters` counts them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParamCount {
    pub trainable_params: usize,
    /// The base's and the adapter's.
    pub total_params: usize,
    pub trainable_percent: f64,
    /// PEFT's line.
    pub report: String,
}

impl ParamCount {
    fn of(adapter: &Adapter, base: &crate::lm::Llama) -> Self {
        Self::new(adapter.trainable_params(), base)
    }

    /// `trainable` parameters on `base`.
    fn new(trainable: usize, base: &crate::lm::Llama) -> Self {
        let total = base.all_params_with(trainable);
        Self {
            trainable_params: trainable,
            total_params: total,
            trainable_percent: 100.0 * trainable as f64 / total as f64,
            report: crate::lora::trainable_report(trainable, total),
        }
    }
}

/// What `llm.plan` tells of a setting before anything trains: PEFT's count of the adapter it makes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmPlanInfo {
    #[serde(flatten)]
    pub params: ParamCount,
    /// The full names of the modules that get a LoRA layer (`model.layers.0.self_attn.q_proj`), in the
    /// model's order.
    pub target_modules: Vec<String>,
}

/// What `llm.inspectData` tells of a data set as a run would take it: its counts as `llm_start_adapter`
/// resolves them, and one training sequence token by token.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SftDataInfo {
    pub train_rows: usize,
    pub held_out_rows: usize,
    /// 1-based lines of the training file held out when no held-out file was given.
    pub held_out_lines: Vec<usize>,
    /// Training sequences (rows, or packed blocks).
    pub train_sequences: usize,
    pub train_tokens: usize,
    /// Training tokens with a loss target (TRL's labels other than -100).
    pub trained_tokens: usize,
    /// Rows cut to `max_seq_length` (training and held-out).
    pub truncated: usize,
    pub format: SftFormat,
    pub example: SftExampleView,
}

/// One training sequence as the model sees it in training: the chat template applied, cut to
/// `max_seq_length` as training cuts it (or, with packing, one packed block of that length).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SftExampleView {
    /// Its index among the training sequences (0-based).
    pub index: usize,
    /// The 1-based line of the training file it starts at.
    pub line: usize,
    pub tokens: usize,
    /// Its tokens with a loss target.
    pub trained_tokens: usize,
    /// Its text in runs of tokens that the loss trains on (`trained`) or not, in order.
    pub pieces: Vec<SftPiece>,
    /// The tokens of each example it holds: one entry, or (bfd packing) one per example packed, each
    /// attending to itself only.
    pub lengths: Vec<usize>,
}

/// A run of consecutive tokens with the same `trained`, decoded together (so a character split
/// between two tokens of one run stays whole; one split between two runs shows as U+FFFD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SftPiece {
    pub text: String,
    pub trained: bool,
}

/// What `trainAdapter` learns before the first step.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SftStart {
    pub name: String,
    #[serde(flatten)]
    pub params: ParamCount,
    pub train_rows: usize,
    /// Training sequences (rows, or packed blocks).
    pub train_sequences: usize,
    pub train_tokens: usize,
    pub held_out_rows: usize,
    /// 1-based lines of the training file held out when no held-out file was given.
    pub held_out_lines: Vec<usize>,
    pub truncated: usize,
    pub steps: usize,
    pub warmup_steps: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SftProgress {
    #[serde(flatten)]
    pub progress: Progress,
    pub tokens_per_sec: f64,
    /// The held-out loss before training (the first call measures it and trains nothing).
    pub eval_loss_before: Option<f64>,
    /// The held-out loss when an epoch closed.
    pub eval_loss: Option<f64>,
    /// The greedy exact match of the held-out completions when an epoch closed (where measured and the
    /// held-out rows have completions).
    pub exact_match: Option<f64>,
    /// Bytes of the activations the run keeps.
    pub activation_bytes: usize,
    /// The adapter kept when an epoch closed (TrainingArguments' save each epoch, save_total_limit 2).
    pub checkpoint: Option<CheckpointInfo>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SftSummary {
    pub name: String,
    #[serde(flatten)]
    pub params: ParamCount,
    pub eval_loss_before: Option<f64>,
    pub eval_loss: Vec<f64>,
    /// The exact match after each epoch, where measured.
    pub exact_match: Vec<f64>,
    pub steps: usize,
    pub seconds: f64,
    pub tokens_per_sec: f64,
    pub cancelled: bool,
    /// FNV-1a of every step's loss bits: equal runs have equal hashes.
    pub loss_hash: String,
    /// The base it trained on was held in NF4 (`llm_quantize_base`); null: as read.
    pub nf4: Option<Nf4Base>,
}

/// Held-out loss and exact match of one model.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scores {
    pub loss: f64,
    /// Greedy answers equal to the expected completion, as a fraction (`None`: no prompt-completion rows).
    pub exact_match: Option<f64>,
    pub answers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SftEvaluation {
    pub base: Scores,
    pub adapted: Option<Scores>,
    /// Per held-out prompt-completion row that fits the context: the completion it should get.
    pub expected: Vec<String>,
    /// The same rows' prompts as a person reads them (the prompt's text, or a conversation's last user
    /// message), in the order of `expected`.
    pub prompts: Vec<String>,
}

impl Pretrained {
    /// `settings` resolved against this model; nothing is made yet.
    fn resolve(&self, settings: &LlmAdapterSettings) -> Result<LlmAdapterPlan> {
        settings.resolve(&self.model.modules(), self.model.cfg.layers)
    }

    fn sft_tokenizer(&self) -> SftTokenizer<'_> {
        let c = &self.model.cfg;
        SftTokenizer {
            bpe: &self.tokenizer,
            template: self.template.as_ref(),
            bos: self.add_bos.then_some(c.bos),
            eos: c.eos,
            eos_text: self.tokenizer.token_text(c.eos).unwrap_or(""),
        }
    }

    /// The run's data: rows parsed and encoded as TRL does, the held-out rows apart.
    pub(super) fn prepare(
        &self,
        data: &LlmData,
        demo: Option<&(String, String)>,
        plan: &LlmAdapterPlan,
    ) -> Result<Prepared> {
        let (train_text, test_text) = match data {
            LlmData::Named(n) if n == "demo" => {
                let (a, b) = demo.ok_or_else(|| LabError::state("the demo data is not loaded yet"))?;
                (a.as_str(), Some(b.as_str()))
            }
            LlmData::Named(n) => {
                return Err(LabError::setting("data", format!("\"{n}\" is not \"demo\" or {{ jsonl }}")))
            }
            LlmData::Jsonl { jsonl, test_jsonl } => (jsonl.as_str(), test_jsonl.as_deref()),
        };
        let mut rows = parse_sft_jsonl(train_text.as_bytes(), "train.jsonl")?;
        let (mut train, test, held_out_lines): (Vec<SftRow>, Vec<SftRow>, Vec<usize>) = match test_text {
            Some(t) => (rows, parse_sft_jsonl(t.as_bytes(), "test.jsonl")?, Vec::new()),
            None => {
                if rows.len() < 2 {
                    return Err(LabError::setting("data", "give at least 2 rows, or a held-out file"));
                }
                // Every tenth row (lines 10, 20, …) held out: spread over the file, and easy to say.
                let mut test = Vec::new();
                let mut kept = Vec::new();
                for (i, r) in rows.drain(..).enumerate() {
                    if i % 10 == 9 {
                        test.push(r)
                    } else {
                        kept.push(r)
                    }
                }
                if test.is_empty() {
                    test.push(kept.pop().expect("two rows at least"));
                }
                let lines = test.iter().map(|r| r.line).collect();
                (kept, test, lines)
            }
        };
        if let Some(l) = plan.limit {
            train.truncate(l);
        }
        let format = train.first().or(test.first()).map_or(SftFormat::Text, |r| SftFormat::of(&r.kind));
        let tok = self.sft_tokenizer();
        let max = plan.max_seq_length.min(self.model.cfg.context);
        // TRL packs whole examples and cuts the stream into blocks: no truncation before packing.
        let train_max = if plan.packing { usize::MAX } else { max };
        let train_ex = encode_sft(&train, &tok, train_max, plan.assistant_only_loss)?;
        let test_ex = encode_sft(&test, &tok, max, plan.assistant_only_loss)?;
        // bfd packing cuts each example to the block; wrapped packing cuts none
        let cut_in_packing = match (plan.packing, plan.packing_strategy) {
            (true, PackingStrategy::Bfd) => train_ex.iter().filter(|e| e.ids.len() > max).count(),
            _ => 0,
        };
        let truncated = train_ex.iter().chain(&test_ex).filter(|e| e.truncated).count() + cut_in_packing;
        let train_ex = match (plan.packing, plan.packing_strategy) {
            (false, _) => train_ex,
            (true, PackingStrategy::Bfd) => pack_sft_bfd(&train_ex, max),
            (true, PackingStrategy::Wrapped) => pack_sft(&train_ex, max),
        };
        if let Some(e) = train_ex.iter().chain(&test_ex).find(|e| e.ids.len() > self.model.cfg.context) {
            return Err(LabError::setting(
                "data",
                format!(
                    "line {}: {} tokens is longer than the context of {}",
                    e.line,
                    e.ids.len(),
                    self.model.cfg.context
                ),
            ));
        }
        let vocab = self.model.cfg.vocab;
        let sft = |ex: &[crate::text::SftExample]| {
            SftData::packed(ex.iter().map(|e| (&e.ids[..], &e.trained[..], &e.lengths[..])), vocab)
        };
        let questions = test.iter().filter_map(|r| self.question(r).transpose()).collect::<Result<Vec<_>>>()?;
        Ok(Prepared {
            train: sft(&train_ex)?,
            train_lines: train_ex.iter().map(|e| e.line).collect(),
            held_out: sft(&test_ex)?,
            questions,
            held_out_lines,
            truncated,
            train_rows: train.len(),
            format,
        })
    }

    /// A prompt-completion row as a question (its prompt's ids as generation starts from them, and
    /// the completion's text); `None` for other rows.
    fn question(&self, row: &SftRow) -> Result<Option<Question>> {
        let SftKind::PromptCompletion { prompt, completion } = &row.kind else { return Ok(None) };
        let (text, prompt_text) = match prompt {
            Content::Text(t) => (t.clone(), t.clone()),
            Content::Messages(m) => {
                let last = m.iter().rev().find(|m| m.role == "user").or(m.last());
                (self.apply_chat_template(m, true)?, last.map_or(String::new(), |m| m.content.clone()))
            }
        };
        let expected = match completion {
            Content::Text(t) => t.clone(),
            Content::Messages(m) => m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join(""),
        };
        let ids = self.tokenize(&text);
        if ids.is_empty() || ids.len() + ANSWER_TOKENS > self.model.cfg.context {
            return Ok(None);
        }
        Ok(Some(Question { prompt: self.model_ids(&ids)?, prompt_text, expected: expected.trim().to_string() }))
    }

    /// Greedy answers to `questions` (at most `ANSWER_TOKENS` each, special tokens left out, trimmed)
    /// and the fraction equal to the expected completion.
    pub(super) fn exact_match(
        &self,
        questions: &[Question],
        mut delta: Option<&mut dyn LayerDelta>,
    ) -> Result<(Option<f64>, Vec<String>)> {
        if questions.is_empty() {
            return Ok((None, Vec::new()));
        }
        let eos = self.model.cfg.eos;
        let mut answers = vec![String::new(); questions.len()];
        let mut order: Vec<usize> = (0..questions.len()).collect();
        order.sort_by_key(|&i| questions[i].prompt.len());
        for group in order.chunk_by(|&a, &b| questions[a].prompt.len() == questions[b].prompt.len()) {
            for part in group.chunks(ANSWER_BATCH) {
                let prompts: Vec<Vec<u32>> = part.iter().map(|&i| questions[i].prompt.clone()).collect();
                let limits = GenerateOptions { max_new: ANSWER_TOKENS, stop: &[eos], int8: false };
                let d = delta.as_mut().map(|d| &mut **d as &mut dyn LayerDelta);
                let mut rng = Rng::new(0, Stream::Sample);
                let seqs =
                    self.model.generate_with(&prompts, limits, Sampling::GREEDY, &mut rng, d, &mut |_, _| true)?;
                for (&i, seq) in part.iter().zip(seqs) {
                    let new = &seq[questions[i].prompt.len()..];
                    let end = new.iter().position(|&t| t == eos).unwrap_or(new.len());
                    let ids: Vec<u32> = new[..end].iter().copied().filter(|&t| !self.tokenizer.is_special(t)).collect();
                    answers[i] = self.tokenizer.decode(&ids).trim().to_string();
                }
            }
        }
        let hits = answers.iter().zip(questions).filter(|(a, q)| **a == q.expected).count();
        Ok((Some(hits as f64 / questions.len() as f64), answers))
    }
}

fn mean(sum: f64, count: usize) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// The held-out loss of `base` with `delta` (an adapter in evaluation mode) or alone.
fn held_out_loss(m: &Pretrained, data: &SftData, delta: Option<&mut dyn LayerDelta>) -> Result<f64> {
    let mut acts = SftActivations::default();
    let (sum, count) = crate::kernels::on_pool(|| data.evaluate(&m.model, delta, EVAL_BATCH, &mut acts))?;
    Ok(mean(sum, count))
}

/// The held-out loss of the base alone, measured once per base and data (`LlmRoom::base_loss`).
fn base_held_out_loss(m: &Pretrained, data: &SftData, memo: &mut Option<(SftData, f64)>) -> Result<f64> {
    if let Some((_, loss)) = memo.as_ref().filter(|(seen, _)| seen == data) {
        return Ok(*loss);
    }
    let loss = held_out_loss(m, data, None)?;
    *memo = Some((data.clone(), loss));
    Ok(loss)
}

impl LlmRoom {
    pub(in crate::lab) fn is_training(&self) -> bool {
        self.run.is_some()
    }
}

impl Lab {
    /// The demo task's rows from the two corpora (index.json of an-array-of-english-words, names.txt of
    /// the female first names), kept for `data: "demo"`: → (train JSONL, held-out JSONL).
    pub fn llm_demo_data(&mut self, words_json: &[u8], names_txt: &[u8]) -> Result<(String, String)> {
        let demo = super::demo::demo_task(words_json, names_txt)?;
        self.llm.demo = Some(demo.clone());
        Ok(demo)
    }

    /// A run's plan and data as `llm_start_adapter` makes them, refused as it refuses them.
    fn llm_prepare_run(&self, settings: &LlmAdapterSettings) -> Result<(&Pretrained, LlmAdapterPlan, Prepared)> {
        let m = self.llm_require()?;
        let plan = m.resolve(settings)?;
        let data = m.prepare(&plan.data, self.llm.demo.as_ref(), &plan)?;
        if data.train.is_empty() {
            return Err(LabError::setting("data", "no training rows"));
        }
        if data.held_out.is_empty() {
            return Err(LabError::setting("data", "no held-out rows"));
        }
        Ok((m, plan, data))
    }

    /// PEFT's count of the adapter `settings` make on the loaded model (what `llm_start_adapter` then
    /// reports) and the modules it adapts, counted without making it or reading the data. Refused as
    /// `llm_start_adapter` refuses a bad setting; nothing changes.
    pub fn llm_plan(&self, settings: &LlmAdapterSettings) -> Result<LlmPlanInfo> {
        let m = self.llm_require()?;
        let plan = m.resolve(settings)?;
        let modules = m.model.modules();
        plan.lora.validate(&modules)?;
        Ok(LlmPlanInfo {
            params: ParamCount::new(plan.lora.trainable_params(&modules), &m.model),
            target_modules: plan.lora.target_names(&modules),
        })
    }

    /// The data of `settings` as a run would take them (`llm_start_adapter`'s preparation, refused with
    /// its messages), and training sequence `example` (0-based) token by token as training sees it:
    /// templated, then cut to `max_seq_length` (with packing, a packed block). Nothing changes.
    pub fn llm_inspect_data(&self, settings: &LlmAdapterSettings, example: usize) -> Result<SftDataInfo> {
        let (m, _, data) = self.llm_prepare_run(settings)?;
        let n = data.train.len();
        let Some((ids, trained)) = data.train.example(example) else {
            return Err(LabError::setting(
                "example",
                format!("{example} is past the last training sequence: there are {n}, numbered 0 to {}", n - 1),
            ));
        };
        let mut at = 0;
        let pieces = trained
            .chunk_by(|a, b| a == b)
            .map(|run| {
                let ids: Vec<u32> = ids[at..at + run.len()].to_vec();
                at += run.len();
                SftPiece { text: m.tokenizer.decode(&ids), trained: run[0] }
            })
            .collect();
        Ok(SftDataInfo {
            train_rows: data.train_rows,
            held_out_rows: data.held_out.len(),
            held_out_lines: data.held_out_lines,
            train_sequences: n,
            train_tokens: data.train.total_tokens(),
            trained_tokens: data.train.total_targets(),
            truncated: data.truncated,
            format: data.format,
            example: SftExampleView {
                index: example,
                line: data.train_lines[example],
                tokens: ids.len(),
                trained_tokens: trained.iter().filter(|&&t| t).count(),
                pieces,
                lengths: data.train.lengths(example),
            },
        })
    }

    /// Starts fine-tuning an adapter on the loaded model. Nothing changes if a setting or the data is bad.
    pub fn llm_start_adapter(&mut self, settings: &LlmAdapterSettings) -> Result<SftStart> {
        self.ensure_idle()?;
        let (m, plan, data) = self.llm_prepare_run(settings)?;
        let mut train = plan.train.clone();
        train.batch_size = train.batch_size.min(data.train.len());
        let steps = data.train.len().div_ceil(train.batch_size) * train.epochs;
        train.schedule = plan.schedule_for(steps)?;
        let mut adapter = Adapter::new(&plan.name, plan.lora.clone(), &m.model, train.seed)?;
        adapter.set_training(Some(train.seed));
        let start = SftStart {
            name: plan.name.clone(),
            params: ParamCount::of(&adapter, &m.model),
            train_rows: data.train_rows,
            train_sequences: data.train.len(),
            train_tokens: data.train.total_tokens(),
            held_out_rows: data.held_out.len(),
            held_out_lines: data.held_out_lines.clone(),
            truncated: data.truncated,
            steps,
            warmup_steps: train.schedule.warmup_steps(steps),
        };
        let state = Box::new(SftState::new(&adapter, plan.weight_decay, plan.micro_batch));
        let indices = (0..data.train.len() as u32).collect();
        let trainer = Trainer::new(train, indices, Stream::AdapterShuffle, self.trainer_clock())?;
        self.llm.checkpoints.clear();
        self.llm.run = Some(LlmRun {
            trainer,
            adapter: Box::new(adapter),
            state,
            data,
            plan,
            eval_before: None,
            eval_loss: Vec::new(),
            exact_match_each_epoch: settings.exact_match_each_epoch.unwrap_or(true),
            exact_match: Vec::new(),
        });
        Ok(start)
    }

    /// Runs up to `n_batches` optimizer steps (the first call measures the held-out loss before
    /// training instead); when an epoch closes, the held-out loss with the adapter so far. A
    /// non-finite loss ends the run with an error, keeping the last good step.
    pub fn llm_train_step(&mut self, n_batches: usize) -> Result<SftProgress> {
        let room = &mut self.llm;
        let m = room.model.as_ref().ok_or_else(|| LabError::state("the pretrained model is gone"))?;
        let run = room.run.as_mut().ok_or_else(|| LabError::state("no fine-tuning run in progress"))?;
        let base_loss = &mut room.base_loss;
        let LlmRun {
            trainer, adapter, state, data, eval_before, eval_loss, exact_match_each_epoch, exact_match, ..
        } = run;
        let checkpoints = &mut room.checkpoints;
        let tokens_per_sec =
            |t: &Trainer, s: &SftState| if t.seconds() > 0.0 { s.tokens as f64 / t.seconds() } else { 0.0 };
        if eval_before.is_none() {
            // A fresh adapter adds nothing yet: the loss before is the base's, measured once per base and data.
            let loss = base_held_out_loss(m, &data.held_out, base_loss)?;
            *eval_before = Some(loss);
            let progress = trainer.step(&mut SftObjective { base: &m.model, adapter, state }, &data.train, 0)?;
            return Ok(SftProgress {
                tokens_per_sec: 0.0,
                eval_loss_before: Some(loss),
                eval_loss: None,
                exact_match: None,
                activation_bytes: state.activation_bytes(),
                checkpoint: None,
                progress,
            });
        }
        let stepped = trainer.step(&mut SftObjective { base: &m.model, adapter, state }, &data.train, n_batches);
        let result = stepped.and_then(|p| {
            let (eval, em) = if p.epoch_finished {
                // the adapter as evaluation sees it (no dropout), then back to training
                let rng = adapter.take_training();
                let loss = held_out_loss(m, &data.held_out, Some(&mut **adapter));
                let em = match (&loss, *exact_match_each_epoch) {
                    (Ok(_), true) => crate::kernels::on_pool(|| m.exact_match(&data.questions, Some(&mut **adapter)))
                        .map(|(em, _)| em),
                    _ => Ok(None),
                };
                adapter.restore_training(rng);
                (Some(loss?), em?)
            } else {
                (None, None)
            };
            eval_loss.extend(eval);
            exact_match.extend(em);
            let checkpoint = eval.map(|loss| checkpoints.add_adapter(p.epoch, p.step, loss, adapter, false));
            Ok(SftProgress {
                tokens_per_sec: tokens_per_sec(trainer, state),
                eval_loss_before: None,
                eval_loss: eval,
                exact_match: em,
                activation_bytes: state.activation_bytes(),
                checkpoint,
                progress: p,
            })
        });
        if result.is_err() {
            self.llm_finish(true)?;
        }
        result
    }

    /// Ends the run and keeps its adapter (the whole run, or, `cancelled`, the last completed step)
    /// under its name, active.
    pub fn llm_finish(&mut self, cancelled: bool) -> Result<SftSummary> {
        let run = self.llm.run.take().ok_or_else(|| LabError::state("no fine-tuning run in progress"))?;
        let LlmRun { trainer, mut adapter, state, plan, eval_before, eval_loss, exact_match, data, .. } = run;
        adapter.set_training(None);
        let m = self.llm_require()?;
        let summary = SftSummary {
            name: adapter.name.clone(),
            params: ParamCount::of(&adapter, &m.model),
            eval_loss_before: eval_before,
            eval_loss,
            exact_match,
            steps: trainer.losses().len(),
            seconds: trainer.seconds(),
            tokens_per_sec: if trainer.seconds() > 0.0 { state.tokens as f64 / trainer.seconds() } else { 0.0 },
            cancelled,
            loss_hash: loss_hash(trainer.losses()),
            nf4: self.llm.base_nf4(),
        };
        self.llm.install(*adapter, AdapterMeta { plan, held_out_lines: data.held_out_lines, nf4: summary.nf4 });
        Ok(summary)
    }

    /// The adapters kept at each epoch's end of the last run (two at most).
    pub fn llm_checkpoints(&self) -> Vec<CheckpointInfo> {
        self.llm.checkpoints.list()
    }

    /// Makes a kept checkpoint the adapter of its name, active (its run's settings kept with it).
    pub fn llm_restore_checkpoint(&mut self, id: usize) -> Result<super::AdapterList> {
        self.ensure_idle()?;
        let Saved::Adapter(a) = self.llm.checkpoints.get(id)? else {
            return Err(LabError::state(format!("checkpoint {id} is not an adapter's")));
        };
        let meta = match self.llm.find(&a.name) {
            Ok((_, meta)) => meta.clone(),
            Err(_) => {
                let m = self.llm_require()?;
                let mut plan = m.resolve(&LlmAdapterSettings::default())?;
                plan.name = a.name.clone();
                plan.lora = a.config.clone();
                AdapterMeta { plan, held_out_lines: Vec::new(), nf4: self.llm.base_nf4() }
            }
        };
        self.llm.install(*a, meta);
        Ok(self.llm.list())
    }

    /// Held-out loss and greedy exact match of the base and of the active adapter, on `data` (the
    /// active adapter's own data when `None`, else the demo's).
    pub fn llm_evaluate(&mut self, data: Option<&LlmData>) -> Result<SftEvaluation> {
        self.ensure_idle()?;
        let room = &mut self.llm;
        let m = room.model.as_ref().ok_or_else(|| LabError::state("no pretrained model is loaded: load one first"))?;
        let active = room.active.as_deref().and_then(|n| room.adapters.iter_mut().find(|(a, _)| a.name == n));
        let plan = match active.as_ref() {
            Some((_, meta)) => meta.plan.clone(),
            None => m.resolve(&LlmAdapterSettings::default())?,
        };
        let data = data.cloned().unwrap_or_else(|| plan.data.clone());
        let prepared = m.prepare(&data, room.demo.as_ref(), &plan)?;
        let base_loss = base_held_out_loss(m, &prepared.held_out, &mut room.base_loss)?;
        let score = |delta: Option<&mut dyn LayerDelta>| -> Result<Scores> {
            let mut delta = delta;
            let loss = match delta.as_mut() {
                Some(d) => held_out_loss(m, &prepared.held_out, Some(&mut **d as &mut dyn LayerDelta))?,
                None => base_loss,
            };
            let (exact_match, answers) = crate::kernels::on_pool(|| m.exact_match(&prepared.questions, delta))?;
            Ok(Scores { loss, exact_match, answers })
        };
        let base = score(None)?;
        let adapted = match active {
            Some((a, _)) => Some(score(Some(a))?),
            None => None,
        };
        let (expected, prompts) = prepared.questions.into_iter().map(|q| (q.expected, q.prompt_text)).unzip();
        Ok(SftEvaluation { base, adapted, expected, prompts })
    }
}
