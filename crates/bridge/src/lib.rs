//! `ane-bridge`: a C ABI compatible with upstream's `ane_bridge.h`, built on `ane-train`.
//!
//! This crate is being built; see `DESIGN.md`.

pub use ane_train as train;
