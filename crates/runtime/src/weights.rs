//! Weight files for BLOBFILE constants, by the path written in the MIL.
//!
//! MIL names a weight file as `@model_path/weights/wq.bin`; `@model_path` is the directory a
//! kernel is compiled from (on the Neural Engine, the temp dir the framework compiles in).
//! [`Weights`] maps those paths to file contents, either given in memory or read on demand
//! from a root directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The prefix MIL uses for the model directory.
pub const MODEL_PATH: &str = "@model_path/";

/// Weight files for a Program, keyed by BLOBFILE path exactly as written in the MIL.
#[derive(Debug, Default, Clone)]
pub struct Weights {
    files: BTreeMap<String, Arc<[u8]>>,
    root: Option<PathBuf>,
    loaded: Arc<Mutex<BTreeMap<String, Arc<[u8]>>>>,
}

impl Weights {
    /// No weight files (for programs without BLOBFILE constants).
    pub fn new() -> Self {
        Weights::default()
    }

    /// Reads `@model_path/...` files from under `root` when first asked for.
    pub fn from_dir(root: impl Into<PathBuf>) -> Self {
        Weights {
            root: Some(root.into()),
            ..Weights::default()
        }
    }

    /// Adds (or replaces) the file for `path`, e.g. `@model_path/weights/wq.bin`.
    pub fn insert(&mut self, path: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> &mut Self {
        self.files.insert(path.into(), bytes.into());
        self
    }

    /// The contents of the file for `path`.
    pub fn get(&self, path: &str) -> Result<Arc<[u8]>> {
        if let Some(b) = self.files.get(path) {
            return Ok(b.clone());
        }
        let Some(root) = &self.root else {
            return Err(Error::Weights {
                path: path.into(),
                detail: "no such weight file was given".into(),
            });
        };
        if let Some(b) = self.loaded.lock().map_err(|_| poisoned(path))?.get(path) {
            return Ok(b.clone());
        }
        let file = resolve(root, path)?;
        let bytes: Arc<[u8]> = std::fs::read(&file)
            .map_err(|e| Error::Weights {
                path: path.into(),
                detail: format!("cannot read {}: {e}", file.display()),
            })?
            .into();
        self.loaded
            .lock()
            .map_err(|_| poisoned(path))?
            .insert(path.to_string(), bytes.clone());
        Ok(bytes)
    }

    /// A hash over `paths` (sorted) and their contents: the weights part of a compile-cache key.
    pub fn content_hash<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Result<[u8; 32]> {
        let mut sorted: Vec<&str> = paths.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut h = Sha256::new();
        for p in sorted {
            let bytes = self.get(p)?;
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        Ok(h.finalize().into())
    }
}

fn poisoned(path: &str) -> Error {
    Error::Weights {
        path: path.into(),
        detail: "weight cache lock poisoned by a panic elsewhere".into(),
    }
}

/// Maps `@model_path/rest` to `root/rest`, refusing paths that leave `root`.
fn resolve(root: &Path, path: &str) -> Result<PathBuf> {
    let rest = path
        .strip_prefix(MODEL_PATH)
        .ok_or_else(|| Error::Weights {
            path: path.into(),
            detail: format!("BLOBFILE paths must start with `{MODEL_PATH}`"),
        })?;
    let rel = Path::new(rest);
    let safe = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !safe || rest.is_empty() {
        return Err(Error::Weights {
            path: path.into(),
            detail: "the path must stay inside the model directory (no `..`, no absolute parts)"
                .into(),
        });
    }
    Ok(root.join(rel))
}
