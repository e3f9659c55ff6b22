//! The parameters of a `LlamaForCausalLM` under HF's names: the token embedding, per layer the two
//! RMSNorm weights and seven Linears, the final norm and `lm_head`. No biases. With tied embeddings
//! (`tie_word_embeddings`) `lm_head` holds the one matrix and the embedding lookup reads its rows.

use super::config::LmConfig;
use crate::nn::Linear;
use crate::rng::{Rng, Stream};

#[derive(Clone, Debug, PartialEq)]
pub struct Llama {
    pub cfg: LmConfig,
    /// vocab × hidden (`model.embed_tokens.weight`); empty when tied to `lm_head`.
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
        let mut linears: Vec<Linear> =
            cfg.linear_modules().iter().map(|&(_, i, o)| Linear::without_bias(i, o, normal(i * o))).collect();
        if cfg.tie_embeddings {
            // HF ties after init: the one matrix is the embedding's.
            linears[cfg.lm_head()].weight = std::mem::take(&mut embed);
        }
        let norms = (0..cfg.layers).map(|_| [vec![1.0; cfg.hidden], vec![1.0; cfg.hidden]]).collect();
        let final_norm = vec![1.0; cfg.hidden];
        Self { cfg, embed, linears, norms, final_norm }
    }

    pub fn num_params(&self) -> usize {
        self.cfg.num_params()
    }

    /// Copies the embedding rows of `ids` into `out` (ids.len() × hidden): from `embed`, or from a tied
    /// `lm_head`'s weight (dequantised row by row when it is held quantised).
    pub(super) fn embed_rows(&self, ids: &[u32], out: &mut [f32]) {
        let h = self.cfg.hidden;
        for (x, &id) in out.chunks_exact_mut(h).zip(ids) {
            if self.cfg.tie_embeddings {
                self.linears[self.cfg.lm_head()].weight_row(id as usize, x);
            } else {
                x.copy_from_slice(&self.embed[id as usize * h..][..h]);
            }
        }
    }

    /// Every parameter tensor with its state-dict key, in HF's order (a tied `lm_head` is the embedding,
    /// listed once, as `save_pretrained` writes it).
    pub fn params(&self) -> Vec<(String, &[f32])> {
        let names = self.cfg.linear_modules();
        let head = &self.linears[self.cfg.lm_head()].weight;
        let embed = if self.cfg.tie_embeddings { head } else { &self.embed };
        let mut v: Vec<(String, &[f32])> = vec![("model.embed_tokens.weight".into(), embed)];
        for l in 0..self.cfg.layers {
            v.push((format!("model.layers.{l}.input_layernorm.weight"), &self.norms[l][0]));
            v.push((format!("model.layers.{l}.post_attention_layernorm.weight"), &self.norms[l][1]));
            for j in 0..super::config::LAYER_MODULES.len() {
                let m = self.cfg.module(l, j);
                v.push((format!("{}.weight", names[m].0), &self.linears[m].weight));
            }
        }
        v.push(("model.norm.weight".into(), &self.final_norm));
        if !self.cfg.tie_embeddings {
            v.push(("lm_head.weight".into(), head));
        }
        v
    }

    /// The same tensors as `params`, mutable, in the same order.
    pub fn params_mut(&mut self) -> Vec<&mut [f32]> {
        let cfg = &self.cfg;
        let mut linears: Vec<Option<&mut Linear>> = self.linears.iter_mut().map(Some).collect();
        let head = &mut linears[cfg.lm_head()].take().expect("lm_head once").weight;
        let (embed, head): (&mut [f32], _) =
            if cfg.tie_embeddings { (head, None) } else { (&mut self.embed, Some(head)) };
        let mut v: Vec<&mut [f32]> = vec![embed];
        for (l, [a, b]) in self.norms.iter_mut().enumerate() {
            v.push(a);
            v.push(b);
            for j in 0..super::config::LAYER_MODULES.len() {
                v.push(&mut linears[cfg.module(l, j)].take().expect("each Linear once").weight);
            }
        }
        v.push(&mut self.final_norm);
        v.extend(head.map(|h| &mut h[..]));
        v
    }

    /// Whether each tensor of `params` is a matrix (Linear or embedding weight), which AdamW decays,
    /// or a norm weight, which it does not.
    pub fn decays(&self) -> Vec<bool> {
        self.params().iter().map(|(n, _)| !n.ends_with("norm.weight")).collect()
    }
}
