//! `ane-bridge`: upstream's `ane_bridge.h` C ABI (with PR #22's additions) over `ane-runtime`,
//! on every device — `cpu`, `ane-sim` and `ane` — built as `libane_bridge.{so,dylib,a}`.
//!
//! The header `include/ane_bridge.h` is generated from [`ffi`] by cbindgen and committed; a test
//! fails when it is stale. Fixes what upstream's bridge gets wrong: every byte size is checked
//! against the MIL's declared types, handles are ids in a registry (a freed or made-up handle
//! is an error, not a crash), the runtime binds parameters by name (alphabetical on the Neural
//! Engine) and pads surfaces to 48 KiB, and no panic crosses the C boundary.
//!
//! - [`ffi`]: the C entry points (pointer checks, `last_error`, panic guard);
//! - [`handle`]: compile and the I/O of one handle, in safe Rust;
//! - [`device`]: device choice and the compile count; [`memo`]: the in-process kernel cache;
//! - [`blob`]: weight blob builders; [`error`]: errors and `last_error`.

pub mod blob;
pub mod device;
pub mod error;
pub mod ffi;
pub mod handle;
pub mod memo;
