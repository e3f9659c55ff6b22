//! The network: Linear, ReLU (fused into the kernels), softmax cross-entropy, the article's Mlp, Adam(W),
//! gradient clipping.
//! Each layer is a forward/backward pair with shapes in its signature, no hidden state.

mod adam;
mod clip;
mod linear;
mod loss;
mod mlp;

pub use adam::Adam;
pub use clip::clip_grad_norm;
pub use linear::{Linear, LinearGrads};
pub use loss::{argmax_rows, softmax, softmax_cross_entropy};
pub use mlp::{
    Activations, GradNeeds, LayerDelta, Mlp, MlpGrads, BLANK_INPUT, CLASSES, INPUT, LAYER_NAMES, LAYER_SHAPES,
};
