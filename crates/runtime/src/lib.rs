//! `ane-runtime`: the `Device` trait, Surfaces, Kernels and Bindings, and the devices that run
//! `ane-mil` Programs (`cpu`, `ane-sim`, `ane`).
//!
//! This crate is being built; see `DESIGN.md`. It currently re-exports nothing but the MIL layer
//! it is built on.

pub use ane_mil as mil;
