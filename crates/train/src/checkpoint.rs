//! Training checkpoints: everything a run needs to continue bit for bit where it stopped.
//!
//! File layout (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `ANETCKPT` |
//! | 4 | format version, `u32` = [`VERSION`] |
//! | 8 | header length `h`, `u64`, at most [`MAX_HEADER`] |
//! | h | header: UTF-8 JSON, a [`Header`] |
//! | 4·n | parameters, f32, layout of [`ModelConfig::params`] (`n` = `header.n_params`) |
//! | 4·n | AdamW first moments |
//! | 4·n | AdamW second moments |
//! | t | version ≥ 2: the tokenizer as a llama2.c `tokenizer.bin` (`t` = `header.tokenizer_bytes`, 0 = the byte tokenizer) |
//! | 32 | SHA-256 of every byte before it |
//!
//! Version 1 files (no tokenizer section; byte tokenizer) are still read, and so are version 2
//! files. Version 3 adds the loss scaler's state to the header (`loss_scale`,
//! `loss_scale_clean_run`, `loss_scale_interval`; required); older files carry none and are
//! read with the fixed scale they were trained at, [`LEGACY_SCALE`] (256), and a clean count
//! of 0.
//!
//! [`write`] refuses to write a parameter or moment that is not finite (the error names the
//! tensor and the element), before anything touches the disk.
//!
//! [`write`] goes to a temporary file beside the target, syncs it, and renames it over the
//! target, so a crash leaves either the old checkpoint or the new one, never a torn file.
//! [`read`] checks the magic, version, header, sizes against the file length, and the digest
//! before anything is used.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::loss_scale::{check_scale, GROWTH_INTERVAL, LEGACY_SCALE};
use crate::model::ModelConfig;
use crate::optim::{AdamWConfig, Schedule};
use crate::tokenizer::{Llama2cTokenizer, TextTokenizer};

/// File magic.
pub const MAGIC: &[u8; 8] = b"ANETCKPT";
/// Format version written (versions 1 and 2 are read too; see the module docs).
pub const VERSION: u32 = 3;
/// Oldest format version read.
pub const OLDEST_VERSION: u32 = 1;
/// Largest header accepted (1 MiB).
pub const MAX_HEADER: u64 = 1 << 20;
/// Bytes before the header.
const PREAMBLE: u64 = 8 + 4 + 8;

/// What is wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a checkpoint or is damaged.
    #[error("not a valid ane-train checkpoint: {0}")]
    Invalid(String),
    /// A checkpoint of another format version.
    #[error("checkpoint format version {found}, this build reads versions {OLDEST_VERSION} to {VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
}

/// How training goes on from a checkpoint: the settings it was started with and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The model's configuration.
    pub model: ModelConfig,
    /// Parameters in each of the three arrays (must equal `model.param_count()`).
    pub n_params: u64,
    /// Updates done.
    pub step: u64,
    /// AdamW's step count.
    pub adam_t: u64,
    /// The sampler's RNG state (non-zero).
    pub sampler_state: u64,
    /// The run's settings.
    pub settings: TrainSettings,
    /// Where the training text came from.
    pub corpus: CorpusInfo,
    /// Updates skipped in a row just before this point (non-finite gradients).
    #[serde(default)]
    pub skipped_in_a_row: u32,
    /// Loss scale the next update runs at (a power of two in `[1, 2^24]`; 1 on fp32 devices,
    /// where it is ignored). Files before version 3: [`LEGACY_SCALE`].
    #[serde(default = "legacy_scale")]
    pub loss_scale: f32,
    /// Clean updates in a row since the loss scale last changed (below
    /// `loss_scale_interval`). Files before version 3: 0.
    #[serde(default)]
    pub loss_scale_clean_run: u32,
    /// Clean updates in a row after which the loss scale doubles (at least 1). Files before
    /// version 3: [`GROWTH_INTERVAL`].
    #[serde(default = "growth_interval")]
    pub loss_scale_interval: u32,
    /// Weight mode of the run (`params`, `packed`, `baked`); resuming in another mode works
    /// but is not bit-exact.
    #[serde(default)]
    pub mode: String,
    /// Device kind of the run (`cpu`, `ane-sim`, `ane`); the same holds.
    #[serde(default)]
    pub device: String,
    /// Bytes of the tokenizer section (0: the byte tokenizer). [`write_to`] sets it.
    #[serde(default)]
    pub tokenizer_bytes: u64,
}

/// A training run's settings (kept in the checkpoint so a resumed run continues the same run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Updates in the whole run.
    pub steps: u64,
    /// Micro-steps per update (gradient accumulation; the gradient is their mean).
    pub accum: u32,
    /// Windows per micro-step, run as one `[C, B·S]` pass (1 in checkpoints written before
    /// the batch dimension existed).
    #[serde(default = "one_window")]
    pub batch: u32,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Optimizer settings.
    pub adamw: AdamWConfig,
    /// Seed of the initial parameters and of the window sampler.
    pub seed: u64,
}

fn one_window() -> u32 {
    1
}

fn legacy_scale() -> f32 {
    LEGACY_SCALE
}

fn growth_interval() -> u32 {
    GROWTH_INTERVAL
}

/// Names the first value of `params`, `m`, `v` that is not finite (array, tensor of the
/// config's table, element), or `None` when all are.
fn first_non_finite(header: &Header, arrays: [(&str, &[f32]); 3]) -> Option<String> {
    for (what, a) in arrays {
        let Some(i) = a.iter().position(|x| !x.is_finite()) else {
            continue;
        };
        let mut start = 0;
        for spec in header.model.params() {
            let end = start + spec.numel();
            if i < end {
                return Some(format!(
                    "{what} of tensor {} element {} is {}",
                    spec.name,
                    i - start,
                    a.get(i).copied().unwrap_or(f32::NAN)
                ));
            }
            start = end;
        }
        return Some(format!("{what} element {i} is not finite"));
    }
    None
}

/// Identifies the training text, so resuming on different text is caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusInfo {
    /// `builtin` or the file's path as given.
    pub name: String,
    /// Bytes of text.
    pub bytes: u64,
    /// SHA-256 of the text, hex.
    pub sha256: String,
}

impl CorpusInfo {
    /// The description of `text` called `name`.
    pub fn of(name: &str, text: &[u8]) -> CorpusInfo {
        CorpusInfo {
            name: name.to_string(),
            bytes: text.len() as u64,
            sha256: hex(&Sha256::digest(text)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Settings and position.
    pub header: Header,
    /// Parameters.
    pub params: Vec<f32>,
    /// AdamW first moments.
    pub m: Vec<f32>,
    /// AdamW second moments.
    pub v: Vec<f32>,
    /// The tokenizer the model was trained with.
    pub tokenizer: TextTokenizer,
}

/// Writes a checkpoint atomically (temporary file, fsync, rename, fsync of the directory).
/// `params`, `m` and `v` must each hold `header.n_params` values.
pub fn write(
    path: &Path,
    header: &Header,
    params: &[f32],
    m: &[f32],
    v: &[f32],
    tokenizer: &TextTokenizer,
) -> Result<(), CheckpointError> {
    let n = header.n_params as usize;
    if [params.len(), m.len(), v.len()] != [n; 3] {
        return Err(CheckpointError::Invalid(format!(
            "refusing to write: header says {n} parameters, arrays hold {}, {}, {}",
            params.len(),
            m.len(),
            v.len()
        )));
    }
    if let Some(what) = first_non_finite(
        header,
        [("parameter", params), ("AdamW m", m), ("AdamW v", v)],
    ) {
        return Err(CheckpointError::Invalid(format!(
            "refusing to write {}: {what} (nothing was written)",
            path.display()
        )));
    }
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    crate::atomic::write_atomic(path, |w| {
        write_to(w, header, params, m, v, tokenizer).map(|_| ())
    })
    .map_err(io)
}

/// Writes the checkpoint bytes to `w` (no length checks; see [`write`]) and returns `w`.
/// The header is written with `tokenizer_bytes` set to the tokenizer section's length.
pub fn write_to<W: Write>(
    w: W,
    header: &Header,
    params: &[f32],
    m: &[f32],
    v: &[f32],
    tokenizer: &TextTokenizer,
) -> std::io::Result<W> {
    let mut w = HashingWriter {
        inner: w,
        hash: Sha256::new(),
    };
    let tok = match tokenizer {
        TextTokenizer::Bytes => Vec::new(),
        TextTokenizer::Llama2c(t) => t.to_bytes(),
    };
    let header = Header {
        tokenizer_bytes: tok.len() as u64,
        ..header.clone()
    };
    let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for array in [params, m, v] {
        for chunk in array.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.write_all(&bytes)?;
        }
    }
    w.write_all(&tok)?;
    let digest = w.hash.finalize();
    let mut inner = w.inner;
    inner.write_all(&digest)?;
    inner.flush()?;
    Ok(inner)
}

/// Reads and checks the checkpoint at `path`.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    read_from(BufReader::with_capacity(1 << 20, file), len).map_err(|e| match e {
        CheckpointError::Io { source, .. } => io(source),
        other => other,
    })
}

/// Reads a checkpoint of `len` bytes from `r` (the file length is what bounds every
/// allocation, so a damaged header cannot ask for more memory than the file holds).
pub fn read_from(r: impl Read, len: u64) -> Result<Checkpoint, CheckpointError> {
    let bad = |m: String| CheckpointError::Invalid(m);
    let mut r = HashingReader {
        inner: r,
        hash: Sha256::new(),
    };
    let eof = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad("the file ends early".into()),
        _ => CheckpointError::Io {
            path: PathBuf::new(),
            source: e,
        },
    };
    if len < PREAMBLE + 32 {
        return Err(bad(format!("{len} bytes is too short for a checkpoint")));
    }
    let mut pre = [0u8; PREAMBLE as usize];
    r.read_exact(&mut pre).map_err(eof)?;
    if &pre[..8] != MAGIC {
        return Err(bad("wrong magic (expected ANETCKPT)".into()));
    }
    let version = u32::from_le_bytes(pre[8..12].try_into().unwrap_or_default());
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(CheckpointError::Version { found: version });
    }
    let hlen = u64::from_le_bytes(pre[12..20].try_into().unwrap_or_default());
    if hlen > MAX_HEADER || hlen > len - PREAMBLE - 32 {
        return Err(bad(format!("header length {hlen} is out of range")));
    }
    let mut json = vec![0u8; hlen as usize];
    r.read_exact(&mut json).map_err(eof)?;
    let mut header: Header =
        serde_json::from_slice(&json).map_err(|e| bad(format!("header: {e}")))?;
    if version < 3 {
        // Written before the dynamic scaler: whatever the JSON says, the fixed old scale.
        header.loss_scale = LEGACY_SCALE;
        header.loss_scale_clean_run = 0;
        header.loss_scale_interval = GROWTH_INTERVAL;
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| bad(format!("header: {e}")))?;
        for key in ["loss_scale", "loss_scale_clean_run", "loss_scale_interval"] {
            if value.get(key).is_none() {
                return Err(bad(format!("a version {version} header lacks `{key}`")));
            }
        }
    }
    check_scale(header.loss_scale).map_err(|e| bad(format!("header: {e}")))?;
    if header.loss_scale_interval == 0 || header.loss_scale_clean_run >= header.loss_scale_interval
    {
        return Err(bad(format!(
            "header: loss-scale clean count {} with growth interval {}: the interval must be \
             at least 1 and the count below it",
            header.loss_scale_clean_run, header.loss_scale_interval
        )));
    }
    let n = header.n_params;
    let expected_n = header.model.param_count() as u64;
    if n != expected_n {
        return Err(bad(format!(
            "header says {n} parameters, its model config has {expected_n}"
        )));
    }
    let tok_len = header.tokenizer_bytes;
    if version == 1 && tok_len != 0 {
        return Err(bad("a version 1 checkpoint has no tokenizer section".into()));
    }
    let need = n
        .checked_mul(12)
        .and_then(|b| b.checked_add(PREAMBLE + hlen + 32))
        .and_then(|b| b.checked_add(tok_len));
    if need != Some(len) {
        return Err(bad(format!(
            "the file has {len} bytes, a checkpoint of {n} parameters has {}",
            need.map_or("more than 2^64".to_string(), |b| b.to_string())
        )));
    }
    let mut arrays = Vec::with_capacity(3);
    for _ in 0..3 {
        let mut a = Vec::with_capacity(n as usize);
        let mut buf = vec![0u8; 1 << 18];
        let mut left = n as usize * 4;
        while left > 0 {
            let take = left.min(buf.len());
            r.read_exact(&mut buf[..take]).map_err(eof)?;
            a.extend(
                buf[..take]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            left -= take;
        }
        arrays.push(a);
    }
    let mut tok = vec![0u8; tok_len as usize];
    r.read_exact(&mut tok).map_err(eof)?;
    let digest = r.hash.finalize();
    let mut stored = [0u8; 32];
    r.inner.read_exact(&mut stored).map_err(eof)?;
    if digest[..] != stored {
        return Err(bad("SHA-256 mismatch: the file is damaged".into()));
    }
    if header.step > header.settings.steps || header.settings.accum == 0 {
        return Err(bad(format!(
            "step {} of {} with accumulation {} is not a training position",
            header.step, header.settings.steps, header.settings.accum
        )));
    }
    header.settings.schedule.validate().map_err(bad)?;
    header.settings.adamw.validate().map_err(bad)?;
    if header.adam_t > header.step {
        return Err(bad(format!(
            "AdamW step {} is past the training step {}",
            header.adam_t, header.step
        )));
    }
    if header.sampler_state == 0 {
        return Err(bad("sampler state 0 is not a generator state".into()));
    }
    let tokenizer = if tok.is_empty() {
        TextTokenizer::Bytes
    } else {
        let t = Llama2cTokenizer::from_bytes(&tok, "checkpoint tokenizer section")
            .map_err(|e| bad(e.to_string()))?;
        if t.vocab_size() > header.model.vocab_size {
            return Err(bad(format!(
                "its tokenizer has {} ids, the model's vocabulary {}",
                t.vocab_size(),
                header.model.vocab_size
            )));
        }
        TextTokenizer::Llama2c(t)
    };
    let v = arrays.pop().unwrap_or_default();
    let m = arrays.pop().unwrap_or_default();
    let params = arrays.pop().unwrap_or_default();
    Ok(Checkpoint {
        header,
        params,
        m,
        v,
        tokenizer,
    })
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
