//! The parameters of a `LlamaForCausalLM` under HF's names: the token embedding, per layer the two
//! RMSNorm weights and seven Linears, the final norm and `lm_head`. No biases, nothing tied.

use super::config::LmConfig;
use crate::nn::Linear;
use crate::rng::{Rng, Stream};

#[derive(Clone, Debug, PartialEq)]
pub struct Llama {
    pub cfg: LmConfig,
    /// vocab × hidden (`model.embed_tokens.weight`).
    pub embed: Vec<f32>,
    /// Every Linear, indexed as `LmConfig::linear_modules` lists them (layer-major, `lm_head` last).
    pub linears: Vec<Linear>,
    /// Per layer: `input_layernorm` and `post_attention_layernorm` weights (hidden each).
    pub norms: Vec<[Vec<f32>; 2]>,
    /// `model.norm.weight`.
    pub final_norm: Vec<f32>,
}

impl Llama {
    /// HF's `_init_weights`: every Linear and the embedding normal(0, initializer_range), norms 1, and
    /// the padding token's embedding row zero (`nn.Embedding(padding_idx=pad)`). Drawn from
    /// `Stream::LmInit` in state-dict order.
    pub fn new(cfg: LmConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed, Stream::LmInit);
        let std = cfg.init_std;
        let mut normal = |n: usize| (0..n).map(|_| rng.normal() * std).collect::<Vec<f32>>();
        let mut embed = normal(cfg.vocab * cfg.hidden);
        embed[cfg.pad as usize * cfg.hidden..][..cfg.hidden].fill(0.0);
        let linears = cfg.linear_modules().iter().map(|&(_, i, o)| Linear::without_bias(i, o, normal(i * o))).collect();
        let norms = (0..cfg.layers).map(|_| [vec![1.0; cfg.hidden], vec![1.0; cfg.hidden]]).collect();
        let final_norm = vec![1.0; cfg.hidden];
        Self { cfg, embed, linears, norms, final_norm }
    }

    pub fn num_params(&self) -> usize {
        self.params().iter().map(|(_, p)| p.len()).sum()
    }

    /// Every parameter tensor with its state-dict key, in HF's order.
    pub fn params(&self) -> Vec<(String, &[f32])> {
        let names = self.cfg.linear_modules();
        let mut v: Vec<(String, &[f32])> = vec![("model.embed_tokens.weight".into(), &self.embed)];
        for l in 0..self.cfg.layers {
            v.push((format!("model.layers.{l}.input_layernorm.weight"), &self.norms[l][0]));
            v.push((format!("model.layers.{l}.post_attention_layernorm.weight"), &self.norms[l][1]));
            for j in 0..super::config::LAYER_MODULES.len() {
                let m = self.cfg.module(l, j);
                v.push((format!("{}.weight", names[m].0), &self.linears[m].weight));
            }
        }
        v.push(("model.norm.weight".into(), &self.final_norm));
        v.push(("lm_head.weight".into(), &self.linears[self.cfg.lm_head()].weight));
        v
    }

    /// The same tensors as `params`, mutable, in the same order.
    pub fn params_mut(&mut self) -> Vec<&mut [f32]> {
        let cfg = &self.cfg;
        let mut linears: Vec<Option<&mut Linear>> = self.linears.iter_mut().map(Some).collect();
        let mut v: Vec<&mut [f32]> = vec![&mut self.embed];
        for (l, [a, b]) in self.norms.iter_mut().enumerate() {
            v.push(a);
            v.push(b);
            for j in 0..super::config::LAYER_MODULES.len() {
                v.push(&mut linears[cfg.module(l, j)].take().expect("each Linear once").weight);
            }
        }
        v.push(&mut self.final_norm);
        v.push(&mut linears[cfg.lm_head()].take().expect("lm_head once").weight);
        v
    }

    /// Whether each tensor of `params` is a matrix (Linear or embedding weight), which AdamW decays,
    /// or a norm weight, which it does not.
    pub fn decays(&self) -> Vec<bool> {
        self.params().iter().map(|(n, _)| !n.ends_with("norm.weight")).collect()
    }
}
