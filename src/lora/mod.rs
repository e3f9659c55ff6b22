//! LoRA as the article does it, generalised the way PEFT does: adapters on any Linear of either model
//! (the MLP's three, the language model's 29, chosen by name as PEFT's `target_modules` chooses),
//! any rank, alpha and scaling, dropout, bias, four inits, merge/unmerge. The base stays frozen; an
//! adapter reaches it only through `nn::LayerDelta`, and knows a model only as `Adaptable`.

mod adapter;
mod config;
mod layer;
mod modules;
pub mod targets;

pub use adapter::{trainable_report, Adapter};
pub use config::{scaling_value, Bias, Init, LoraConfig, Scaling};
pub use layer::LoraLayer;
pub use modules::{mlp_modules, Adaptable, Module};
