//! LoRA Lab: low-rank adaptation of an MNIST MLP, computed by our own threaded SIMD128 kernels.
//!
//! Data flows one way: bytes → `data`/`text`/`io` → `nn`/`lora` (via `kernels`) → `train` → `web`.
//! Only `web` knows JavaScript exists; only `kernels` holds SIMD and `unsafe`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod bench;
pub mod data;
pub mod error;
pub mod io;
pub mod kernels;
pub mod lab;
pub mod lm;
pub mod lora;
pub mod nn;
pub mod quant;
pub mod rng;
pub mod svd;
pub mod text;
pub mod train;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{LabError, Result};
