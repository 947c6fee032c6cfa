//! llama2.c `model.bin`: the legacy version 0 (what `run.c` reads) and version 1 (`ak42`,
//! fp32), read; version 0 written.
//!
//! Version 0: 7 × `i32` header `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//! seq_len` (`vocab_size < 0`: the classifier is not the embedding), then `f32` arrays, each
//! holding every layer's tensor in layer order: `embed [V·D]`, `attn_norm [L·D]`,
//! `wq [L·D·D]`, `wk [L·KV·D]`, `wv [L·KV·D]`, `wo [L·D·D]`, `ffn_norm [L·D]`,
//! `w1 [L·HID·D]`, `w2 [L·D·HID]`, `w3 [L·HID·D]`, `final_norm [D]`, the RoPE tables
//! `cos, sin [S·HD/2]` each (llama2.c ignores them), and the classifier `[V·D]` when untied.
//!
//! Version 1: `u32` magic `0x616b3432` ("ak42"), `i32` version 1, the same 7 `i32`s
//! (`vocab_size` positive), a `u8` "classifier is shared" flag, zero padding to 256 bytes;
//! then `attn_norm`, `ffn_norm`, `final_norm`, `embed`, `wq`, `wk`, `wv`, `wo`, `w1`, `w2`,
//! `w3`, and the classifier when not shared. (Version 2 is int8-quantized and refused.)
//!
//! llama2.c has `head_dim = dim / n_heads`, RoPE θ = 10000 on interleaved pairs (ours), RMSNorm
//! eps 1e-5 and no residual scale; a model is imported with those settings and only exported
//! when it has the first three (a residual scale α is folded into `wo` and `w2`:
//! `x + α·W·a = x + (αW)·a`).

use std::path::Path;

use super::{count, put_f32s, read_file, write_file_atomic, Cursor, FormatError};
use crate::model::{ModelConfig, ParamKind};

/// Magic of version 1 files ("ak42" as a little-endian `u32`).
pub const MAGIC_V1: u32 = 0x616b_3432;
/// Header bytes of version 1.
const V1_HEADER: usize = 256;

/// Which `model.bin` layout a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Llama2cVersion {
    /// The legacy header-only layout `run.c` reads.
    V0,
    /// `ak42` version 1, fp32.
    V1,
}

/// A llama2.c model read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama2cModel {
    /// The shape (`name` is `llama2c`; θ 10000, eps 1e-5, no residual scale).
    pub config: ModelConfig,
    /// Parameters in the layout of [`ModelConfig::params`].
    pub params: Vec<f32>,
    /// The layout the file had.
    pub version: Llama2cVersion,
    /// A version 0 file's RoPE table bytes as stored (written back unchanged on export, so
    /// read-then-write is byte-exact); `None` for version 1.
    pub rope_tables: Option<Vec<u8>>,
}

/// One block of the file: a tensor kind for every layer, a global tensor, or the RoPE tables.
#[derive(Debug, Clone, Copy)]
enum Block {
    Layers(ParamKind),
    Global(ParamKind),
    Rope,
}

const V0_ORDER: [Block; 11] = [
    Block::Global(ParamKind::Embed),
    Block::Layers(ParamKind::AttnNorm),
    Block::Layers(ParamKind::Wq),
    Block::Layers(ParamKind::Wk),
    Block::Layers(ParamKind::Wv),
    Block::Layers(ParamKind::Wo),
    Block::Layers(ParamKind::FfnNorm),
    Block::Layers(ParamKind::W1),
    Block::Layers(ParamKind::W2),
    Block::Layers(ParamKind::W3),
    Block::Global(ParamKind::FinalNorm),
];

const V1_ORDER: [Block; 11] = [
    Block::Layers(ParamKind::AttnNorm),
    Block::Layers(ParamKind::FfnNorm),
    Block::Global(ParamKind::FinalNorm),
    Block::Global(ParamKind::Embed),
    Block::Layers(ParamKind::Wq),
    Block::Layers(ParamKind::Wk),
    Block::Layers(ParamKind::Wv),
    Block::Layers(ParamKind::Wo),
    Block::Layers(ParamKind::W1),
    Block::Layers(ParamKind::W2),
    Block::Layers(ParamKind::W3),
];

/// The blocks of a file of `version`, classifier included when untied.
fn blocks(version: Llama2cVersion, tied: bool) -> Vec<Block> {
    let mut b = match version {
        Llama2cVersion::V0 => {
            let mut b = V0_ORDER.to_vec();
            b.push(Block::Rope);
            b
        }
        Llama2cVersion::V1 => V1_ORDER.to_vec(),
    };
    if !tied {
        b.push(Block::Global(ParamKind::Classifier));
    }
    b
}

fn block_name(b: Block) -> String {
    match b {
        Block::Layers(k) => format!("{k:?} (all layers)"),
        Block::Global(k) => format!("{k:?}"),
        Block::Rope => "rope tables".to_string(),
    }
}

/// Floats in one RoPE table (`seq_len · head_dim / 2`).
fn rope_floats(cfg: &ModelConfig) -> usize {
    cfg.seq_len * cfg.head_dim / 2
}

impl Llama2cModel {
    /// Parses a `model.bin` of either version; `file` names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, FormatError> {
        let mut c = Cursor::new(bytes, file);
        let first = c.u32("magic or dim")?;
        let (version, dims, shared) = if first == MAGIC_V1 {
            let v = c.i32("version")?;
            if v != 1 {
                return Err(c.err(
                    "version",
                    format!(
                        "llama2.c format version {v} is not supported (version 1 is fp32; \
                         version 2 is int8-quantized: export fp32 with llama2.c's \
                         `export.py --version 1` or the legacy version 0)"
                    ),
                ));
            }
            let mut d = [0i32; 7];
            for (i, name) in FIELDS.iter().enumerate() {
                d[i] = c.i32(name)?;
            }
            let shared = c.take(1, "shared_classifier")?[0];
            if shared > 1 {
                return Err(c.err("shared_classifier", format!("{shared} is not 0 or 1")));
            }
            c.skip(V1_HEADER - c.pos(), "header padding")?;
            (Llama2cVersion::V1, d, shared == 1)
        } else {
            let mut d = [first as i32, 0, 0, 0, 0, 0, 0];
            for (i, name) in FIELDS.iter().enumerate().skip(1) {
                d[i] = c.i32(name)?;
            }
            let shared = d[5] > 0;
            d[5] = d[5].checked_abs().unwrap_or(-1);
            (Llama2cVersion::V0, d, shared)
        };
        let mut n = [0usize; 7];
        for (i, name) in FIELDS.iter().enumerate() {
            n[i] = count(&c, dims[i], name)?;
        }
        let [dim, hidden, layers, heads, kv_heads, vocab, seq] = n;
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(c.err(
                "n_heads",
                format!(
                    "{heads} does not divide dim {dim} (llama2.c's head size is dim / n_heads)"
                ),
            ));
        }
        let config = ModelConfig {
            name: "llama2c".to_string(),
            dim,
            n_layers: layers,
            n_heads: heads,
            n_kv_heads: kv_heads,
            head_dim: dim / heads,
            hidden_dim: hidden,
            vocab_size: vocab,
            seq_len: seq,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            tied_classifier: shared,
            residual_scale: None,
        };
        config.validate().map_err(|source| FormatError::Config {
            file: file.to_string(),
            source,
        })?;
        let order = blocks(version, shared);
        // The whole size is known from the header: check it before allocating anything.
        let floats = config.param_count() as u128
            + if version == Llama2cVersion::V0 {
                2 * rope_floats(&config) as u128
            } else {
                0
            };
        c.expect_remaining(floats * 4, "weights")?;
        let table = config.params();
        let mut params = vec![0.0f32; config.param_count()];
        let mut rope_tables = None;
        for b in order {
            let field = block_name(b);
            match b {
                Block::Rope => {
                    let n = 2 * rope_floats(&config) * 4;
                    rope_tables = Some(c.take(n, &field)?.to_vec());
                }
                Block::Global(k) | Block::Layers(k) => {
                    for spec in table.iter().filter(|s| s.kind == k) {
                        c.f32s_to(&mut params[spec.range()], &field)?;
                    }
                }
            }
        }
        c.finish("classifier")?;
        Ok(Llama2cModel {
            config,
            params,
            version,
            rope_tables,
        })
    }

    /// Reads a `model.bin`.
    pub fn read(path: &Path) -> Result<Self, FormatError> {
        Self::from_bytes(&read_file(path)?, &path.display().to_string())
    }
}

/// Header field names, in file order.
const FIELDS: [&str; 7] = [
    "dim",
    "hidden_dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "seq_len",
];

/// Checks `cfg` is a model llama2.c can run; the error names the field that is not.
fn check_exportable(cfg: &ModelConfig) -> Result<(), FormatError> {
    let bad = |field: &str, problem: String| Err(FormatError::invalid("model.bin", field, problem));
    if cfg.q_dim() != cfg.dim {
        return bad(
            "head_dim",
            format!(
                "n_heads·head_dim = {} differs from dim {}; llama2.c needs head_dim = dim / n_heads",
                cfg.q_dim(),
                cfg.dim
            ),
        );
    }
    if cfg.rope_theta != 10_000.0 {
        return bad(
            "rope_theta",
            format!("{} (run.c uses 10000)", cfg.rope_theta),
        );
    }
    if cfg.norm_eps != 1e-5 {
        return bad("norm_eps", format!("{} (run.c uses 1e-5)", cfg.norm_eps));
    }
    let ints = [
        cfg.dim,
        cfg.hidden_dim,
        cfg.n_layers,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.vocab_size,
        cfg.seq_len,
    ];
    for (v, name) in ints.iter().zip(FIELDS) {
        if i32::try_from(*v).is_err() {
            return bad(name, format!("{v} does not fit an i32"));
        }
    }
    Ok(())
}

/// The RoPE tables llama2.c's exporter stores: `cos` then `sin` of `p·θ^(-2i/HD)`, `[S, HD/2]`
/// row-major each.
fn rope_table_bytes(cfg: &ModelConfig) -> Vec<u8> {
    let half = cfg.head_dim / 2;
    let mut cos = Vec::with_capacity(cfg.seq_len * half);
    let mut sin = Vec::with_capacity(cfg.seq_len * half);
    for p in 0..cfg.seq_len {
        for i in 0..half {
            let f = (f64::from(cfg.rope_theta)).powf(-2.0 * i as f64 / cfg.head_dim as f64);
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    let mut out = Vec::with_capacity(8 * cos.len());
    put_f32s(&mut out, &cos);
    put_f32s(&mut out, &sin);
    out
}

/// The version 0 `model.bin` bytes of `cfg` with `params` (layout of
/// [`ModelConfig::params`]). `rope_tables`: the bytes to store as RoPE tables (those of a
/// file read, for a byte-exact round trip), or `None` to compute them.
pub fn to_v0_bytes(
    cfg: &ModelConfig,
    params: &[f32],
    rope_tables: Option<&[u8]>,
) -> Result<Vec<u8>, FormatError> {
    check_exportable(cfg)?;
    if params.len() != cfg.param_count() {
        return Err(FormatError::invalid(
            "model.bin",
            "params",
            format!(
                "{} values for a model of {}",
                params.len(),
                cfg.param_count()
            ),
        ));
    }
    let rope = match rope_tables {
        Some(r) if r.len() == 8 * rope_floats(cfg) => r.to_vec(),
        Some(r) => {
            return Err(FormatError::invalid(
                "model.bin",
                "rope tables",
                format!(
                    "{} bytes, the shape needs {}",
                    r.len(),
                    8 * rope_floats(cfg)
                ),
            ))
        }
        None => rope_table_bytes(cfg),
    };
    let vocab = if cfg.tied_classifier {
        cfg.vocab_size as i32
    } else {
        -(cfg.vocab_size as i32)
    };
    let header = [
        cfg.dim as i32,
        cfg.hidden_dim as i32,
        cfg.n_layers as i32,
        cfg.n_heads as i32,
        cfg.n_kv_heads as i32,
        vocab,
        cfg.seq_len as i32,
    ];
    let mut out = Vec::with_capacity(28 + 4 * params.len() + rope.len());
    for h in header {
        out.extend_from_slice(&h.to_le_bytes());
    }
    let table = cfg.params();
    for b in blocks(Llama2cVersion::V0, cfg.tied_classifier) {
        match b {
            Block::Rope => out.extend_from_slice(&rope),
            Block::Global(k) | Block::Layers(k) => {
                let alpha = cfg.residual_alpha();
                for spec in table.iter().filter(|s| s.kind == k) {
                    let w = &params[spec.range()];
                    if matches!(k, ParamKind::Wo | ParamKind::W2) && alpha != 1.0 {
                        let scaled: Vec<f32> = w.iter().map(|v| v * alpha).collect();
                        put_f32s(&mut out, &scaled);
                    } else {
                        put_f32s(&mut out, w);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Writes a version 0 `model.bin` (see [`to_v0_bytes`]) atomically.
pub fn write_v0(
    path: &Path,
    cfg: &ModelConfig,
    params: &[f32],
    rope_tables: Option<&[u8]>,
) -> Result<(), FormatError> {
    write_file_atomic(path, &to_v0_bytes(cfg, params, rope_tables)?)
}

#[cfg(test)]
mod tests;
