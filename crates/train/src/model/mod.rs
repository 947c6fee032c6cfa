//! Model configurations and the parameter table of the LLaMA-family model we train.
//!
//! - [`ModelConfig`] — the shape of a model: presets by name ([`ModelConfig::preset`]) or a
//!   TOML file ([`ModelConfig::from_toml_file`]), always validated against the rules the
//!   device and the host ops rely on;
//! - [`ParamSpec`] — one row of the parameter table ([`ModelConfig::params`]): our name, the
//!   Hugging Face name, the shape and the offset in one flat parameter buffer;
//! - [`kv_head_of`] — the one query-head → KV-head mapping used by every GQA op, host and
//!   device.
//!
//! Shape legend: `D` dim, `S` seq, `HID` hidden, `NH` heads, `NKV` KV heads, `HD` head dim,
//! `V` vocab, `Q = NH·HD`, `KV = NKV·HD`.

mod config;
mod gqa;
mod params;

pub use config::{ConfigError, ModelConfig, MAX_DIM, MIN_SEQ, PRESETS, SEQ_MULTIPLE};
pub use gqa::kv_head_of;
pub use params::{ParamKind, ParamSpec};
