//! `ane-train`: the LLaMA-family model, its device kernels and host ops, the optimizer and the
//! trainer. It sees devices only through the `ane-runtime` `Device` trait.
//!
//! This crate is being built; see `DESIGN.md`.

pub use ane_runtime as runtime;
