//! [`ModelConfig`]: the shape of a LLaMA-family model, its presets and its TOML form.
//!
//! A config is valid when every rule the device kernels and the host ops rely on holds
//! ([`ModelConfig::validate`]); every way of obtaining one ([`ModelConfig::preset`],
//! [`ModelConfig::from_toml_str`], serde deserialization) validates it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest tensor dimension a device kernel may have (`ane-pitfalls.md` §A rule 10).
/// The vocabulary is exempt: the classifier runs on the host.
pub const MAX_DIM: usize = 65_536;

/// The smallest sequence length (`ane-pitfalls.md` §A rule 5: keep S >= 32).
pub const MIN_SEQ: usize = 32;

/// The spatial width every kernel surface must be a multiple of (rule 5).
pub const SEQ_MULTIPLE: usize = 16;

/// The names [`ModelConfig::preset`] knows, smallest first.
pub const PRESETS: &[&str] = &[
    "tiny",
    "stories260k",
    "stories15m",
    "stories42m",
    "stories110m",
    "qwen3-0.6b",
];

/// What is wrong with a model configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No preset has this name.
    #[error("unknown model preset `{name}` (known presets: {known})")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known presets, comma-separated.
        known: String,
    },
    /// The name is empty.
    #[error("model config `name` must not be empty")]
    EmptyName,
    /// A size is zero.
    #[error("model config `{field}` must be > 0")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// `head_dim` was not given and `dim` is not a multiple of `n_heads`.
    #[error(
        "`dim` {dim} is not a multiple of `n_heads` {n_heads}: set `head_dim` explicitly \
         (the query width is then n_heads·head_dim, which may differ from dim)"
    )]
    HeadDimUndetermined {
        /// Model width.
        dim: usize,
        /// Query heads.
        n_heads: usize,
    },
    /// `head_dim` is odd, so RoPE cannot rotate channel pairs.
    #[error("`head_dim` {head_dim} must be even (RoPE rotates channel pairs)")]
    HeadDimOdd {
        /// The head dimension.
        head_dim: usize,
    },
    /// The query heads cannot be shared evenly among the KV heads.
    #[error(
        "`n_heads` {n_heads} must be a multiple of `n_kv_heads` {n_kv_heads} \
         (each KV head serves n_heads/n_kv_heads query heads)"
    )]
    HeadsNotDivisible {
        /// Query heads.
        n_heads: usize,
        /// KV heads.
        n_kv_heads: usize,
    },
    /// `seq_len` is not a multiple of 16.
    #[error("`seq_len` {seq_len} must be a multiple of {SEQ_MULTIPLE} (ANE surface width rule)")]
    SeqNotMultiple {
        /// The sequence length.
        seq_len: usize,
    },
    /// `seq_len` is below the minimum.
    #[error("`seq_len` {seq_len} must be >= {MIN_SEQ} (ANE surface width rule)")]
    SeqTooShort {
        /// The sequence length.
        seq_len: usize,
    },
    /// A dimension exceeds what one device kernel may have.
    #[error("`{field}` is {value}, above the device limit of {MAX_DIM} per dimension")]
    TooLarge {
        /// The dimension (`dim`, `hidden_dim`, `q_dim = n_heads·head_dim`, `kv_dim`, `seq_len`).
        field: &'static str,
        /// Its value.
        value: usize,
    },
    /// The vocabulary does not fit `u32` token ids.
    #[error("`vocab_size` {vocab_size} exceeds the 2^32 ids a u32 token can name")]
    VocabTooLarge {
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A float setting is not finite or not positive.
    #[error("`{field}` is {value}; it must be finite and > 0")]
    NotPositive {
        /// The setting (`rope_theta`, `norm_eps`, `residual_scale`).
        field: &'static str,
        /// Its value.
        value: f32,
    },
    /// The parameter count does not fit `usize`.
    #[error("the model has more parameters than this machine can address")]
    TooManyParams,
    /// The TOML text does not parse or names an unknown key.
    #[error("invalid model config TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// The config could not be written as TOML.
    #[error("cannot write model config as TOML: {0}")]
    TomlWrite(#[from] toml::ser::Error),
    /// The TOML file could not be read.
    #[error("cannot read model config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The shape of a LLaMA-family model: token embedding, `n_layers` blocks of
/// `x2 = x + α·Attn(RMSNorm(x))`, `x' = x2 + α·FFN(RMSNorm(x2))` with a SwiGLU FFN, a final
/// RMSNorm and a classifier (the embedding when `tied_classifier`).
///
/// Derived widths: [`q_dim`](Self::q_dim) `= n_heads·head_dim` (may differ from `dim`, as in
/// Qwen3), [`kv_dim`](Self::kv_dim) `= n_kv_heads·head_dim`.
///
/// TOML form (`head_dim` defaults to `dim / n_heads`, `n_kv_heads` to `n_heads`,
/// `rope_theta` to 10000, `norm_eps` to 1e-5, `tied_classifier` to true, `residual_scale`
/// to none = 1.0; unknown keys are rejected):
///
/// ```toml
/// name = "tiny"
/// dim = 64
/// n_layers = 2
/// n_heads = 4
/// n_kv_heads = 2
/// hidden_dim = 172
/// vocab_size = 512
/// seq_len = 32
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct ModelConfig {
    /// A name for reports and file names.
    pub name: String,
    /// Model width `D` (residual stream channels).
    pub dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Query heads `NH`.
    pub n_heads: usize,
    /// Key/value heads `NKV` (`NKV < NH` is grouped-query attention).
    pub n_kv_heads: usize,
    /// Channels per head `HD` (even: RoPE rotates pairs).
    pub head_dim: usize,
    /// FFN hidden width `HID`.
    pub hidden_dim: usize,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Sequence length `S` of one training window (a multiple of 16, >= 32).
    pub seq_len: usize,
    /// RoPE base θ: pair `i` of a head rotates by `p·θ^(-2i/HD)` at position `p`.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Whether the classifier is the token embedding (`logits = E·x`).
    pub tied_classifier: bool,
    /// Residual branch scale α (`x + α·branch`); `None` = 1.0 (standard LLaMA). Upstream's
    /// dynamic pipeline uses the DeepNet-style `1/sqrt(2·n_layers)`
    /// ([`ModelConfig::deepnet_residual_scale`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residual_scale: Option<f32>,
}

/// The TOML/serde form: optional fields resolved by [`ModelConfig::try_from`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_dim: usize,
    vocab_size: usize,
    seq_len: usize,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default = "default_norm_eps")]
    norm_eps: f32,
    #[serde(default = "default_tied")]
    tied_classifier: bool,
    residual_scale: Option<f32>,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

fn default_norm_eps() -> f32 {
    1e-5
}

fn default_tied() -> bool {
    true
}

impl TryFrom<RawConfig> for ModelConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let head_dim = match raw.head_dim {
            Some(hd) => hd,
            None if raw.n_heads == 0 => return Err(ConfigError::Zero { field: "n_heads" }),
            None if !raw.dim.is_multiple_of(raw.n_heads) => {
                return Err(ConfigError::HeadDimUndetermined {
                    dim: raw.dim,
                    n_heads: raw.n_heads,
                })
            }
            None => raw.dim / raw.n_heads,
        };
        let cfg = ModelConfig {
            name: raw.name,
            dim: raw.dim,
            n_layers: raw.n_layers,
            n_heads: raw.n_heads,
            n_kv_heads: raw.n_kv_heads.unwrap_or(raw.n_heads),
            head_dim,
            hidden_dim: raw.hidden_dim,
            vocab_size: raw.vocab_size,
            seq_len: raw.seq_len,
            rope_theta: raw.rope_theta,
            norm_eps: raw.norm_eps,
            tied_classifier: raw.tied_classifier,
            residual_scale: raw.residual_scale,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl ModelConfig {
    /// A LLaMA config with the defaults (θ 10000, eps 1e-5, tied, α = 1); not yet validated.
    #[allow(clippy::too_many_arguments)]
    fn llama(
        name: &str,
        dim: usize,
        n_layers: usize,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        hidden_dim: usize,
        vocab_size: usize,
        seq_len: usize,
    ) -> ModelConfig {
        ModelConfig {
            name: name.to_string(),
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            hidden_dim,
            vocab_size,
            seq_len,
            rope_theta: default_rope_theta(),
            norm_eps: default_norm_eps(),
            tied_classifier: true,
            residual_scale: None,
        }
    }

    /// The preset called `name` (one of [`PRESETS`]):
    ///
    /// | preset | D | layers | NH / NKV / HD | HID | V | S | α |
    /// |---|---|---|---|---|---|---|---|
    /// | `tiny` | 64 | 5 | 8 / 4 / 8 | 176 | 512 | 128 | 1 |
    /// | `stories260k` | 64 | 5 | 8 / 4 / 8 | 172 | 512 | 512 | 1 |
    /// | `stories15m` | 288 | 6 | 6 / 6 / 48 | 768 | 32000 | 256 | 1 |
    /// | `stories42m` | 512 | 8 | 8 / 8 / 64 | 1376 | 32000 | 1024 | 1 |
    /// | `stories110m` | 768 | 12 | 12 / 12 / 64 | 2048 | 32000 | 256 | 1 |
    /// | `qwen3-0.6b` | 1024 | 28 | 16 / 8 / 128 | 3072 | 151936 | 256 | 1/√56 |
    ///
    /// `tiny` is the model of `ane-train train`'s default run: Stories260K's layers with the
    /// FFN widened from 172 to 176 (a multiple of 16, so no Neural Engine kernel input needs
    /// padding), Stories260K's 512-id vocabulary (the default run learns a 512-id BPE tokenizer
    /// from its corpus) and 128-token windows. The `stories*` presets are the llama2.c
    /// TinyStories shapes (tied classifier, α = 1, so
    /// llama2.c checkpoints load as they are). `stories110m` uses S = 256, as upstream trains
    /// it, instead of llama2.c's 1024: RoPE has no learned positions, so a 1024-trained
    /// checkpoint runs unchanged on 256-token windows, and the per-layer surfaces stay 4×
    /// smaller. `qwen3-0.6b` is the shape upstream trains as "Qwen3-0.6B": no QK-norm,
    /// θ = 10000 (the real model uses 1e6), DeepNet residual scale `1/sqrt(2·28)`.
    pub fn preset(name: &str) -> Result<ModelConfig, ConfigError> {
        let cfg = match name {
            "tiny" => Self::llama(name, 64, 5, 8, 4, 8, 176, 512, 128),
            "stories260k" => Self::llama(name, 64, 5, 8, 4, 8, 172, 512, 512),
            "stories15m" => Self::llama(name, 288, 6, 6, 6, 48, 768, 32_000, 256),
            "stories42m" => Self::llama(name, 512, 8, 8, 8, 64, 1376, 32_000, 1024),
            "stories110m" => Self::llama(name, 768, 12, 12, 12, 64, 2048, 32_000, 256),
            "qwen3-0.6b" => ModelConfig {
                residual_scale: Some(Self::deepnet_residual_scale(28)),
                ..Self::llama(name, 1024, 28, 16, 8, 128, 3072, 151_936, 256)
            },
            _ => {
                return Err(ConfigError::UnknownPreset {
                    name: name.to_string(),
                    known: PRESETS.join(", "),
                })
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates a config from TOML text (unknown keys are an error).
    pub fn from_toml_str(text: &str) -> Result<ModelConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        ModelConfig::try_from(raw)
    }

    /// Reads, parses and validates a TOML config file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<ModelConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The config as TOML text that [`from_toml_str`](Self::from_toml_str) reads back equal.
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string(self)?)
    }

    /// Checks every rule; the first one broken is the error:
    /// non-empty name; all sizes > 0; `head_dim` even; `n_heads` a multiple of `n_kv_heads`;
    /// `seq_len` a multiple of 16 and >= 32; `dim`, `hidden_dim`, `q_dim`, `kv_dim`, `seq_len`
    /// <= [`MAX_DIM`] (the vocabulary is exempt, but fits u32 ids); `rope_theta`, `norm_eps`
    /// and `residual_scale` finite and > 0; the parameter count fits `usize`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        let sizes = [
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("hidden_dim", self.hidden_dim),
            ("vocab_size", self.vocab_size),
            ("seq_len", self.seq_len),
        ];
        if let Some((field, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { field });
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::HeadDimOdd {
                head_dim: self.head_dim,
            });
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ConfigError::HeadsNotDivisible {
                n_heads: self.n_heads,
                n_kv_heads: self.n_kv_heads,
            });
        }
        if !self.seq_len.is_multiple_of(SEQ_MULTIPLE) {
            return Err(ConfigError::SeqNotMultiple {
                seq_len: self.seq_len,
            });
        }
        if self.seq_len < MIN_SEQ {
            return Err(ConfigError::SeqTooShort {
                seq_len: self.seq_len,
            });
        }
        let q_dim = self.n_heads.checked_mul(self.head_dim);
        let kv_dim = self.n_kv_heads.checked_mul(self.head_dim);
        let dims = [
            ("dim", Some(self.dim)),
            ("hidden_dim", Some(self.hidden_dim)),
            ("q_dim", q_dim),
            ("kv_dim", kv_dim),
            ("seq_len", Some(self.seq_len)),
        ];
        for (field, value) in dims {
            match value {
                Some(v) if v <= MAX_DIM => {}
                _ => {
                    return Err(ConfigError::TooLarge {
                        field,
                        value: value.unwrap_or(usize::MAX),
                    })
                }
            }
        }
        if u64::try_from(self.vocab_size).map_or(true, |v| v > 1 << 32) {
            return Err(ConfigError::VocabTooLarge {
                vocab_size: self.vocab_size,
            });
        }
        let floats = [
            ("rope_theta", Some(self.rope_theta)),
            ("norm_eps", Some(self.norm_eps)),
            ("residual_scale", self.residual_scale),
        ];
        for (field, value) in floats {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ConfigError::NotPositive { field, value: v });
                }
            }
        }
        self.checked_param_count()
            .ok_or(ConfigError::TooManyParams)?;
        Ok(())
    }

    /// Query width `Q = n_heads·head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Key/value width `KV = n_kv_heads·head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads per KV head, `n_heads / n_kv_heads` (1 = plain multi-head attention).
    pub fn gqa_ratio(&self) -> usize {
        self.n_heads.checked_div(self.n_kv_heads).unwrap_or(0)
    }

    /// The residual branch scale α (`residual_scale`, or 1.0 when unset).
    pub fn residual_alpha(&self) -> f32 {
        self.residual_scale.unwrap_or(1.0)
    }

    /// The DeepNet-style residual scale upstream uses, `1/sqrt(2·n_layers)`.
    pub fn deepnet_residual_scale(n_layers: usize) -> f32 {
        (1.0 / (2.0 * n_layers as f64).sqrt()) as f32
    }

    /// Total number of parameters (all rows of [`params`](Self::params); the embedding
    /// once when the classifier is tied). Saturates on configs that
    /// [`validate`](Self::validate) rejects as too large.
    pub fn param_count(&self) -> usize {
        self.checked_param_count().unwrap_or(usize::MAX)
    }

    fn checked_param_count(&self) -> Option<usize> {
        let (d, q, kv, hid) = (self.dim, self.q_dim(), self.kv_dim(), self.hidden_dim);
        let per_layer = [
            d.checked_mul(q)?,                   // Wq
            d.checked_mul(kv)?,                  // Wk
            d.checked_mul(kv)?,                  // Wv
            d.checked_mul(q)?,                   // Wo
            d.checked_mul(hid)?.checked_mul(3)?, // W1, W2, W3
            d.checked_mul(2)?,                   // two RMSNorm weights
        ]
        .iter()
        .try_fold(0usize, |acc, &n| acc.checked_add(n))?;
        let embed = self.vocab_size.checked_mul(d)?;
        let classifier = if self.tied_classifier { 0 } else { embed };
        per_layer
            .checked_mul(self.n_layers)?
            .checked_add(d)?
            .checked_add(embed)?
            .checked_add(classifier)
    }
}
