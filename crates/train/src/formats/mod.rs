//! Model files of other systems, read and written: llama2.c `model.bin` ([`llama2c`]),
//! Hugging Face safetensors directories ([`safetensors`]) and maderix/ANE checkpoints
//! ([`upstream_v4`]), plus [`load_weights`], which opens any of them by looking at it.
//!
//! Every reader works on the whole file as bytes and checks each size against the bytes that
//! are left before it allocates, so a damaged header can neither panic nor ask for more
//! memory than the file holds; every error names the file and the field.

pub mod llama2c;
pub mod safetensors;
pub mod upstream_v4;
mod weights;

pub use weights::{load_weights, Weights, WeightsSource};

use std::path::{Path, PathBuf};

use crate::model::ConfigError;

/// What is wrong with a model, tokenizer or token file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A field of the file is missing, out of range or inconsistent with another.
    #[error("{file}: `{field}`: {problem}")]
    Invalid {
        /// The file (as given, or a description when read from memory).
        file: String,
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The model shape the file describes is not one this system can run.
    #[error("{file}: the model shape it describes is not valid: {source}")]
    Config {
        /// The file.
        file: String,
        /// Why the shape is refused.
        source: ConfigError,
    },
}

impl FormatError {
    /// An [`FormatError::Invalid`] for `field` of `file`.
    pub fn invalid(file: &str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        FormatError::Invalid {
            file: file.to_string(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Reads the whole file at `path`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, FormatError> {
    std::fs::read(path).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file beside it, synced, then renamed, so a
/// crash never leaves a half-written file under the real name.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    use std::io::Write;
    crate::atomic::write_atomic(path, |w| w.write_all(bytes)).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A bounds-checked little-endian reader over a file's bytes. Every read names its field, so
/// a short file is reported as "`field`: truncated".
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    /// A reader at the start of `buf`, reporting errors against `file`.
    pub(crate) fn new(buf: &'a [u8], file: &'a str) -> Self {
        Cursor { buf, pos: 0, file }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Offset of the next byte.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The error for `field` of this file.
    pub(crate) fn err(&self, field: impl Into<String>, problem: impl Into<String>) -> FormatError {
        FormatError::invalid(self.file, field, problem)
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.err(
                field,
                format!(
                    "truncated: needs {n} bytes at offset {}, the file has {} left",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize, field: &str) -> Result<(), FormatError> {
        self.take(n, field).map(|_| ())
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], FormatError> {
        let b = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A little-endian `i32`.
    pub(crate) fn i32(&mut self, field: &str) -> Result<i32, FormatError> {
        self.array(field).map(i32::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, FormatError> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// A little-endian `f32`.
    pub(crate) fn f32(&mut self, field: &str) -> Result<f32, FormatError> {
        self.array(field).map(f32::from_le_bytes)
    }

    /// A little-endian `f64`.
    pub(crate) fn f64(&mut self, field: &str) -> Result<f64, FormatError> {
        self.array(field).map(f64::from_le_bytes)
    }

    /// Fills `dst` with the next `dst.len()` little-endian `f32`s (the length is checked
    /// against the bytes left first).
    pub(crate) fn f32s_to(&mut self, dst: &mut [f32], field: &str) -> Result<(), FormatError> {
        let bytes = dst
            .len()
            .checked_mul(4)
            .ok_or_else(|| self.err(field, "too many floats"))?;
        let raw = self.take(bytes, field)?;
        for (d, s) in dst.iter_mut().zip(raw.chunks_exact(4)) {
            *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        }
        Ok(())
    }

    /// Checks, before anything is allocated, that exactly `need` bytes (of `what`, as the
    /// header's shape says) are left; the error is field `file size`, truncated or oversized.
    pub(crate) fn expect_remaining(&self, need: u128, what: &str) -> Result<(), FormatError> {
        let have = self.remaining() as u128;
        if need == have {
            return Ok(());
        }
        let kind = if need > have {
            "truncated"
        } else {
            "oversized"
        };
        Err(self.err(
            "file size",
            format!(
                "{kind}: the header's shape needs {need} bytes of {what} after the {}-byte \
                 header, the file has {have}",
                self.pos
            ),
        ))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self, after: &str) -> Result<(), FormatError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.err(
                after,
                format!(
                    "oversized: {} bytes follow the last field (the file has {}, the header \
                     accounts for {})",
                    self.remaining(),
                    self.buf.len(),
                    self.pos
                ),
            ))
        }
    }
}

/// A header count as `usize`, refusing negative values.
pub(crate) fn count(c: &Cursor<'_>, value: i32, field: &str) -> Result<usize, FormatError> {
    usize::try_from(value).map_err(|_| c.err(field, format!("{value} is negative")))
}

/// Appends `x` as little-endian bytes.
pub(crate) fn put_f32s(out: &mut Vec<u8>, x: &[f32]) {
    out.reserve(x.len() * 4);
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}
