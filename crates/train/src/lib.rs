//! `ane-train`: the LLaMA-family model, its device kernels and host ops, the optimizer and the
//! trainer. It sees devices only through the `ane-runtime` `Device` trait.
//!
//! - [`model`] — model configurations (presets and TOML files, validated);
//! - [`kernels`] — one MIL generator per device kernel, each in the three weight modes;
//! - [`host`] — the host ops (embedding, RMSNorm, RoPE, SiLU, GQA, loss, dW GEMMs) on
//!   channel-first `[C, S]` f32 buffers, each with an f64 reference test.

#![deny(missing_docs)]

pub mod atomic;
pub mod checkpoint;
pub mod data;
pub mod formats;
pub mod generate;
pub mod host;
pub mod kernels;
pub mod llama;
pub mod loss_scale;
pub mod model;
pub mod optim;
pub mod report;
pub mod rng;
pub mod sample;
pub mod tokenizer;
pub mod trainer;

pub use ane_runtime as runtime;
