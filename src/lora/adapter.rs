//! A named adapter over the frozen base: LoRA layers on the targeted Linears, plus the bias shifts
//! PEFT's `bias` option trains. It plugs into the base model through `nn::LayerDelta`.

use super::config::{Init, LoraConfig};
use super::layer::LoraLayer;
use super::modules::{Adaptable, Module};
use crate::error::Result;
use crate::nn::LayerDelta;
use crate::rng::{Rng, Stream};
use crate::svd;

#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    pub name: String,
    pub config: LoraConfig,
    /// The base model's modules (names and shapes), indexed as `config.targets` and `LoraLayer::layer`.
    pub modules: Vec<Module>,
    /// One per target, in module order.
    pub layers: Vec<LoraLayer>,
    /// Trained bias minus the base bias, per module where the bias setting trains it.
    pub bias_shift: Vec<Option<Vec<f32>>>,
    pub bias_grad: Vec<Option<Vec<f32>>>,
    /// Training mode: dropout draws from this stream; `None` in evaluation.
    dropout_rng: Option<Rng>,
}

impl Adapter {
    /// A fresh adapter on `base` with `config`'s init; `seed` drives the random inits and dropout.
    pub fn new(name: &str, config: LoraConfig, base: &impl Adaptable, seed: u64) -> Result<Self> {
        let modules = base.modules();
        config.validate(&modules)?;
        let mut rng = Rng::new(seed, Stream::AdapterInit);
        let s = config.scaling_value();
        let r = config.rank;
        let mut layers = Vec::with_capacity(config.targets.len());
        for &t in &config.targets {
            let (fan_in, fan_out) = (modules[t].in_features, modules[t].out_features);
            // The weights the base computes with: PiSSA on a 4-bit base starts from the dequantised W.
            let w = &base.linear(t).dense_weight();
            let layer = match config.init {
                Init::Svd | Init::Pissa => {
                    let lr = svd::low_rank(w, fan_out, fan_in, r)?;
                    // The article's A (out×r) is PEFT's lora_B; its B (r×in) is lora_A.
                    let (mut lora_a, mut lora_b) = (lr.b, lr.a);
                    if config.init == Init::Pissa {
                        let k = 1.0 / s.sqrt();
                        lora_a.iter_mut().chain(lora_b.iter_mut()).for_each(|v| *v *= k);
                    }
                    let mut l = LoraLayer::new(t, (fan_in, fan_out), r, s, lora_a, lora_b);
                    if config.init == Init::Pissa {
                        l.residual = Some((l.lora_a.clone(), l.lora_b.clone()));
                    }
                    l
                }
                Init::Default => {
                    // kaiming_uniform_(a=√5) on an r×in weight: U(±1/√in).
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let a = (0..r * fan_in).map(|_| rng.uniform_in(-bound, bound)).collect();
                    LoraLayer::new(t, (fan_in, fan_out), r, s, a, vec![0.0; fan_out * r])
                }
                Init::Gaussian => {
                    let std = 1.0 / r as f32;
                    let a = (0..r * fan_in).map(|_| rng.normal() * std).collect();
                    LoraLayer::new(t, (fan_in, fan_out), r, s, a, vec![0.0; fan_out * r])
                }
            };
            layers.push(layer);
        }
        let bias_shift: Vec<Option<Vec<f32>>> = (0..modules.len())
            .map(|i| (config.trains_bias(i) && modules[i].has_bias).then(|| vec![0.0; modules[i].out_features]))
            .collect();
        let bias_grad = bias_shift.clone();
        Ok(Self { name: name.to_string(), config, modules, layers, bias_shift, bias_grad, dropout_rng: None })
    }

    /// Starts (`Some(seed)`) or ends (`None`) training mode, where dropout is applied.
    pub fn set_training(&mut self, seed: Option<u64>) {
        self.dropout_rng = seed.map(|s| Rng::new(s, Stream::Dropout));
    }

    /// Leaves training mode for a moment (an evaluation mid-run), returning the dropout stream.
    pub fn take_training(&mut self) -> Option<Rng> {
        self.dropout_rng.take()
    }

    pub fn restore_training(&mut self, rng: Option<Rng>) {
        self.dropout_rng = rng;
    }

    /// `y += ` module `i`'s trained bias shift, if it has one.
    fn add_bias_shift(&self, i: usize, y: &mut [f32]) {
        if let Some(Some(shift)) = self.bias_shift.get(i) {
            for row in y.chunks_exact_mut(shift.len()) {
                row.iter_mut().zip(shift).for_each(|(v, s)| *v += s);
            }
        }
    }

    pub fn layer(&self, i: usize) -> Option<&LoraLayer> {
        self.layers.iter().find(|l| l.layer == i)
    }

    /// Parameters this adapter trains: lora_A and lora_B of each target, and the trained biases.
    pub fn trainable_params(&self) -> usize {
        self.layers.iter().map(LoraLayer::num_params).sum::<usize>()
            + self.bias_shift.iter().flatten().map(Vec::len).sum::<usize>()
    }

    /// PEFT's `print_trainable_parameters` line, with the base model's parameters as "all params"
    /// (the article's convention: 1,064 of 535,818).
    pub fn trainable_report(&self, base_params: usize) -> String {
        trainable_report(self.trainable_params(), base_params)
    }

    /// The trainable tensors and their gradients, in a fixed order (for Adam): each layer's lora_A
    /// and lora_B, then the trained bias shifts.
    pub fn params_and_grads(&mut self) -> (Vec<&mut [f32]>, Vec<&[f32]>) {
        let (params, grads) = self.params_and_grads_mut();
        (params, grads.into_iter().map(|g| &*g).collect())
    }

    /// `params_and_grads` with the gradients mutable (for clipping).
    pub fn params_and_grads_mut(&mut self) -> (Vec<&mut [f32]>, Vec<&mut [f32]>) {
        let mut params: Vec<&mut [f32]> = Vec::new();
        let mut grads: Vec<&mut [f32]> = Vec::new();
        for l in &mut self.layers {
            params.push(&mut l.lora_a);
            grads.push(&mut l.grad_a);
            params.push(&mut l.lora_b);
            grads.push(&mut l.grad_b);
        }
        for (p, g) in self.bias_shift.iter_mut().zip(&mut self.bias_grad) {
            if let (Some(p), Some(g)) = (p, g) {
                params.push(p);
                grads.push(g);
            }
        }
        (params, grads)
    }

    pub fn param_sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.layers.iter().flat_map(|l| [l.lora_a.len(), l.lora_b.len()]).collect();
        v.extend(self.bias_shift.iter().flatten().map(Vec::len));
        v
    }

    /// Writes this adapter into the base: W += ΔW, bias += shift (PEFT's merge; a 4-bit Linear is
    /// dequantised, added to and quantised again, as PEFT merges into `Linear4bit`).
    pub fn merge_into(&self, base: &mut impl Adaptable) -> Result<()> {
        for l in &self.layers {
            base.linear_mut(l.layer).add_to_weight(&l.delta_weight())?;
        }
        for (i, shift) in self.bias_shift.iter().enumerate() {
            if let Some(shift) = shift {
                base.linear_mut(i).bias.iter_mut().zip(shift).for_each(|(b, s)| *b += s);
            }
        }
        Ok(())
    }

    /// Full names of the modules with a LoRA layer.
    pub fn target_names(&self) -> Vec<String> {
        self.config.target_names(&self.modules)
    }

    /// Names of the modules this adapter touches (LoRA or bias), for messages and exports.
    pub fn touched_layers(&self) -> Vec<&str> {
        (0..self.modules.len()).filter(|&i| self.is_active(i)).map(|i| self.modules[i].name.as_str()).collect()
    }
}

impl LayerDelta for Adapter {
    fn is_active(&self, i: usize) -> bool {
        self.layer(i).is_some() || self.bias_shift.get(i).is_some_and(Option::is_some)
    }

    fn forward(&mut self, i: usize, x: &[f32], y: &mut [f32], b: usize) {
        let p = self.config.dropout;
        if let Some(l) = self.layers.iter_mut().find(|l| l.layer == i) {
            l.forward(x, y, b, self.dropout_rng.as_mut().map(|r| (r, p)));
        }
        self.add_bias_shift(i, y);
    }

    fn backward(&mut self, i: usize, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, b: usize) {
        if let Some(Some(g)) = self.bias_grad.get_mut(i) {
            crate::kernels::bias_grad(dy, b, g.len(), g);
        }
        if let Some(l) = self.layers.iter_mut().find(|l| l.layer == i) {
            l.backward(x, dy, dx, b);
        }
    }

    fn forward_again(&mut self, i: usize, x: &[f32], y: &mut [f32], b: usize) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.layer == i) {
            l.forward_again(x, y, b);
        }
        self.add_bias_shift(i, y);
    }

    fn draws(&self) -> bool {
        self.dropout_rng.is_some() && self.config.dropout > 0.0
    }
}

/// PEFT's `print_trainable_parameters` line for `trainable` of `all` parameters.
pub fn trainable_report(trainable: usize, all: usize) -> String {
    format!(
        "trainable params: {} || all params: {} || trainable%: {:.4}",
        group(trainable),
        group(all),
        100.0 * trainable as f64 / all as f64
    )
}

/// 535818 → "535,818".
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
