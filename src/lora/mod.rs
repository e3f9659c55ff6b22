//! LoRA as the article does it, generalised the way PEFT does: adapters on any of the three Linears,
//! any rank, alpha and scaling, dropout, bias, four inits, merge/unmerge. The base stays frozen; an
//! adapter reaches it only through `nn::LayerDelta`.

mod adapter;
mod config;
mod layer;
pub mod targets;

pub use adapter::Adapter;
pub use config::{scaling_value, Bias, Init, LoraConfig, Scaling};
pub use layer::LoraLayer;
