//! The CPU executor's ops: each module is the executable definition of its MIL ops.

pub mod conv;
pub mod copy;
pub mod elementwise;
pub mod math;
pub mod matmul;
pub mod reduce;
pub mod sdpa;
