//! The shape of a Hugging Face `LlamaForCausalLM`: what `config.json` says, checked before anything is
//! allocated. `LmConfig::tiny()` is the lab's model (../shared/LANGUAGE_MODEL.md).

use crate::error::{LabError, Result};

/// The seven Linear modules of a decoder layer, in HF's order and under HF's names.
pub const LAYER_MODULES: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];
/// Index of each module within a layer's seven.
pub const Q: usize = 0;
pub const K: usize = 1;
pub const V: usize = 2;
pub const O: usize = 3;
pub const GATE: usize = 4;
pub const UP: usize = 5;
pub const DOWN: usize = 6;

#[derive(Clone, Debug, PartialEq)]
pub struct LmConfig {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    /// `num_attention_heads`: query heads.
    pub heads: usize,
    /// Query heads per key/value head (grouped-query attention; 1: every head has its own keys and
    /// values). `num_key_value_heads` = heads / kv_group.
    pub kv_group: usize,
    pub head_dim: usize,
    /// `max_position_embeddings`: the longest sequence, and the packing block.
    pub context: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    /// `tie_word_embeddings`: the output layer is the token embedding (`lm_head` holds the one matrix).
    pub tie_embeddings: bool,
    /// HF's `initializer_range`: the std of the normal init of every Linear and the embedding.
    pub init_std: f32,
}

impl LmConfig {
    /// The lab's language model: byte vocabulary of 264, hidden 128, 4 layers of 4 heads, context 64.
    pub fn tiny() -> Self {
        Self {
            vocab: 264,
            hidden: 128,
            intermediate: 352,
            layers: 4,
            heads: 4,
            kv_group: 1,
            head_dim: 32,
            context: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            bos: 256,
            eos: 257,
            pad: 258,
            tie_embeddings: false,
            init_std: 0.02,
        }
    }

    /// Sizes a browser can hold and the kernels support; `file` names the source in errors.
    pub fn validate(&self, file: &str) -> Result<()> {
        let bad = |reason: String| Err(LabError::file(file, reason));
        let limits = [
            ("vocab_size", self.vocab, 1, 1 << 18),
            ("hidden_size", self.hidden, 1, 4096),
            ("intermediate_size", self.intermediate, 1, 16384),
            ("num_hidden_layers", self.layers, 1, 64),
            ("num_attention_heads", self.heads, 1, 64),
            ("head_dim", self.head_dim, 2, 256),
            ("max_position_embeddings", self.context, 2, 1 << 17),
        ];
        for (name, v, lo, hi) in limits {
            if v < lo || v > hi {
                return bad(format!("{name} is {v}; this lab handles {lo} to {hi}"));
            }
        }
        if self.kv_group == 0 || !self.heads.is_multiple_of(self.kv_group) {
            return bad(format!(
                "num_key_value_heads must divide num_attention_heads {} (query heads per key/value head: {})",
                self.heads, self.kv_group
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} is odd; rotary embeddings need pairs", self.head_dim));
        }
        if self.num_params() > 2 << 30 {
            return bad(format!("{} parameters is more than this lab holds (2 G)", self.num_params()));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return bad(format!("rms_norm_eps {} is not in (0, 1)", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope_theta {} is not a number above 1", self.rope_theta));
        }
        for (name, id) in [("bos_token_id", self.bos), ("eos_token_id", self.eos), ("pad_token_id", self.pad)] {
            if id as usize >= self.vocab {
                return bad(format!("{name} {id} is outside the vocabulary of {}", self.vocab));
            }
        }
        Ok(())
    }

    /// `num_key_value_heads`.
    pub fn kv_heads(&self) -> usize {
        self.heads / self.kv_group.max(1)
    }

    /// Width of the queries (and of o_proj's input): heads × head_dim.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of the keys and of the values: num_key_value_heads × head_dim.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads() * self.head_dim
    }

    /// (in, out) of a layer's module `j` (`Q` … `DOWN`).
    pub fn module_shape(&self, j: usize) -> (usize, usize) {
        let (h, i) = (self.hidden, self.intermediate);
        match j {
            Q => (h, self.q_dim()),
            K | V => (h, self.kv_dim()),
            O => (self.q_dim(), h),
            GATE | UP => (h, i),
            _ => (i, h),
        }
    }

    /// Every Linear of the model as (HF module name, in, out), in the order the lab indexes them:
    /// layer 0's seven, layer 1's, …, then `lm_head`.
    pub fn linear_modules(&self) -> Vec<(String, usize, usize)> {
        let mut v: Vec<(String, usize, usize)> = (0..self.layers)
            .flat_map(|l| {
                LAYER_MODULES.iter().enumerate().map(move |(j, n)| {
                    let (i, o) = self.module_shape(j);
                    (format!("model.layers.{l}.{n}"), i, o)
                })
            })
            .collect();
        v.push(("lm_head".to_string(), self.hidden, self.vocab));
        v
    }

    /// The module index of layer `l`'s module `j`.
    pub fn module(&self, l: usize, j: usize) -> usize {
        l * LAYER_MODULES.len() + j
    }

    /// The module index of `lm_head`.
    pub fn lm_head(&self) -> usize {
        self.layers * LAYER_MODULES.len()
    }

    pub fn num_params(&self) -> usize {
        let (h, v) = (self.hidden, self.vocab);
        let per_layer: usize = (0..LAYER_MODULES.len()).map(|j| self.module_shape(j)).map(|(i, o)| i * o).sum::<usize>();
        let embeddings = if self.tie_embeddings { v * h } else { 2 * v * h };
        self.layers * (per_layer + 2 * h) + embeddings + h
    }
}
