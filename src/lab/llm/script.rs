//! The way on when a person outgrows the browser: `train.py`, TRL's `SFTTrainer` with the same
//! `LoraConfig` and `SFTConfig` as the run in the page, the data as JSONL beside it, resuming from the
//! page's adapter (`PeftModel.from_pretrained(..., is_trainable=True)`) — runnable on GPUs with TRL as
//! it is.

use serde::Serialize;

use super::settings::{LlmAdapterPlan, LlmData};
use super::Nf4Base;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::lora::targets::TargetModules;
use crate::lora::Scaling;

/// The files of the script's folder (the adapter itself is `llm_export_adapter`'s, in `adapter/`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingScript {
    pub train_py: String,
    /// The training rows, as given.
    pub dataset_jsonl: String,
    /// The held-out rows, as given (the rows the page held out when it cut them from the data).
    pub test_jsonl: String,
}

/// A Python string literal (JSON's escapes are Python's).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The `target_modules` argument as given: a list of names, or one regular expression.
fn py_targets(t: &TargetModules) -> String {
    match t {
        TargetModules::Names(v) => format!("[{}]", v.iter().map(|s| py_str(s)).collect::<Vec<_>>().join(", ")),
        TargetModules::Pattern(p) => py_str(p),
    }
}

/// How `train.py` loads the base: as the page held it (`nf4`: QLoRA's 4-bit base, on a GPU that
/// bitsandbytes runs on) or in full precision.
fn load_base(nf4: Option<Nf4Base>) -> String {
    let Some(q) = nf4 else { return "model = AutoModelForCausalLM.from_pretrained(BASE)".into() };
    format!(
        r#"# The page trained on a 4-bit NF4 base (QLoRA). bitsandbytes holds one on a CUDA GPU; elsewhere the base
# stays in full precision.
quantization = (
    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant={dq})
    if torch.cuda.is_available()
    else None
)
model = AutoModelForCausalLM.from_pretrained(BASE, quantization_config=quantization)
if quantization is not None:
    model = prepare_model_for_kbit_training(model)"#,
        dq = py_bool(q.double_quant)
    )
}

/// `train.py` for `plan`'s run on `base` (a Hub model name), over a base held in NF4 when `nf4`.
pub(super) fn train_py(plan: &LlmAdapterPlan, base: &str, nf4: Option<Nf4Base>) -> String {
    let l = &plan.lora;
    let layers =
        plan.layers_to_transform.as_ref().map_or(String::new(), |v| format!("\n    layers_to_transform={v:?},"));
    let warmup = if plan.warmup_steps < 1.0 {
        format!("{}", plan.warmup_steps)
    } else {
        format!("{}", plan.warmup_steps as u64)
    };
    let schedule = match plan.train.schedule {
        crate::train::Schedule::LinearWithWarmup { .. } => "linear",
        crate::train::Schedule::ConstantWithWarmup { .. } => "constant_with_warmup",
        _ => "cosine",
    };
    format!(
        r#""""Go on fine-tuning "{name}" with TRL on a GPU, with the settings LoRA Lab trained it with in the browser.

    pip install "trl>=1.16" "peft>=0.21" "transformers>=5" datasets{bitsandbytes}
    python train.py

On a GPU with bf16 (TRL's default precision), else in f32 (a CPU runs it too, slowly).

Reads dataset.jsonl and test.jsonl beside this file and, when ./adapter holds the page's PEFT adapter, goes on
from it (is_trainable=True); else starts a fresh adapter with the same LoraConfig. Writes checkpoints to
./output and the adapter to ./adapter-trl (load it with PeftModel.from_pretrained(model, "adapter-trl")).
"""
import json
import os

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

BASE = {base}
HERE = os.path.dirname(os.path.abspath(__file__))


def rows(name):
    # Python's json, not datasets' JSON reader: Arrow would turn "2021-03-12" into a date.
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return Dataset.from_list([json.loads(line) for line in f if line.strip()])


tokenizer = AutoTokenizer.from_pretrained(BASE)
{load_base}
adapter = os.path.join(HERE, "adapter")
peft_config = LoraConfig(
    r={r},
    lora_alpha={alpha},
    lora_dropout={dropout},
    bias="none",
    target_modules={targets},{layers}
    use_rslora={rslora},
    task_type="CAUSAL_LM",
)
if os.path.isfile(os.path.join(adapter, "adapter_config.json")):
    model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    peft_config = None  # the adapter's own config

args = SFTConfig(
    output_dir=os.path.join(HERE, "output"),
    per_device_train_batch_size={batch},
    gradient_accumulation_steps={accumulation},
    num_train_epochs={epochs},
    learning_rate={lr},
    weight_decay={wd},
    lr_scheduler_type={schedule},
    warmup_steps={warmup},
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=2,
    seed={seed},
    max_length={max_len},
    packing={packing},
    packing_strategy={strategy},
    eval_packing=False,  # the page scores the held-out rows one by one
    assistant_only_loss={assistant_only},
    report_to=[],
    # TRL's default precision is bf16, which needs a GPU that has it; elsewhere f32 (on a CPU: slow, but it runs)
    bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
)
trainer = SFTTrainer(
    model=model,
    args=args,
    train_dataset=rows("dataset.jsonl"),
    eval_dataset=rows("test.jsonl"),
    processing_class=tokenizer,
    peft_config=peft_config,
)
print("held-out loss before:", trainer.evaluate()["eval_loss"])
trainer.train()
trainer.save_model(os.path.join(HERE, "adapter-trl"))
"#,
        name = plan.name.replace('"', "'"),
        base = py_str(base),
        r = l.rank,
        alpha = l.alpha,
        dropout = l.dropout,
        targets = py_targets(&plan.target_modules),
        rslora = py_bool(l.scaling == Scaling::RsLora),
        batch = plan.micro_batch,
        accumulation = plan.accumulation,
        epochs = plan.train.epochs,
        lr = plan.train.lr,
        wd = plan.weight_decay,
        schedule = py_str(schedule),
        seed = plan.train.seed,
        max_len = plan.max_seq_length,
        packing = py_bool(plan.packing),
        strategy = py_str(plan.packing_strategy.name()),
        assistant_only = py_bool(plan.assistant_only_loss),
        load_base = load_base(nf4),
        bitsandbytes = if nf4.is_some() { " bitsandbytes" } else { "" },
    )
}

/// The lines of `text` whose 1-based numbers are (`held`) or are not (`!held`) in `lines`.
fn pick_lines(text: &str, lines: &[usize], held: bool) -> String {
    let mut out = String::new();
    for (i, l) in text.lines().enumerate() {
        if !l.trim().is_empty() && lines.contains(&(i + 1)) == held {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

impl Lab {
    /// `train.py` and the data of adapter `name`'s run: the rows it trained on (after `limit`) and
    /// the rows it was scored on, as JSONL.
    pub fn llm_export_training_script(&self, name: &str) -> Result<TrainingScript> {
        let (_, meta) = self.llm.find(name)?;
        let plan = &meta.plan;
        let (train, test) = match &plan.data {
            LlmData::Named(_) => {
                let (a, b) =
                    self.llm.demo.as_ref().ok_or_else(|| LabError::state("the demo data is not loaded yet"))?;
                (a.clone(), b.clone())
            }
            LlmData::Jsonl { jsonl, test_jsonl: Some(t) } => (jsonl.clone(), t.clone()),
            LlmData::Jsonl { jsonl, test_jsonl: None } => {
                (pick_lines(jsonl, &meta.held_out_lines, false), pick_lines(jsonl, &meta.held_out_lines, true))
            }
        };
        let train = match plan.limit {
            Some(n) => train.lines().filter(|l| !l.trim().is_empty()).take(n).map(|l| format!("{l}\n")).collect(),
            None => train,
        };
        Ok(TrainingScript {
            train_py: train_py(plan, &self.llm_hub_name()?, meta.nf4),
            dataset_jsonl: train,
            test_jsonl: test,
        })
    }
}
