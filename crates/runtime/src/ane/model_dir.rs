//! A model's temp directory, `NSTemporaryDirectory()/<hexStringIdentifier>` (reference §1.6):
//! the driver writes `model.mil` and every BLOBFILE weight file under its `@model_path/`
//! relative path (`@model_path` resolves to this directory); the framework adds `net.plist`
//! (the MIL text) and `data` (a weight blob) when it compiles. Kernels with the same identity
//! share the directory; it is removed when the last of them is dropped, or when compile or
//! load fails.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::backend::WeightFile;
use crate::error::{Error, Result};
use crate::weights::MODEL_PATH;

/// The files the framework writes while compiling, which a compile cache keeps: `net.plist`
/// (required) and `data` (only when the model has weights).
pub const ARTIFACTS: [&str; 2] = ["net.plist", "data"];

/// How many live kernels use each model directory.
#[derive(Debug, Default)]
pub struct DirTable(Mutex<HashMap<PathBuf, usize>>);

/// One kernel's claim on a model directory; see the module docs.
#[derive(Debug)]
pub struct ModelDir {
    path: PathBuf,
    table: Arc<DirTable>,
}

impl ModelDir {
    /// Claims `path` and writes `model.mil` and the weight files into it.
    pub fn create(
        table: &Arc<DirTable>,
        path: PathBuf,
        mil: &str,
        weights: &[WeightFile],
    ) -> Result<Self> {
        *table
            .0
            .lock()
            .map_err(|_| poisoned())?
            .entry(path.clone())
            .or_insert(0) += 1;
        let dir = ModelDir {
            path,
            table: table.clone(),
        };
        dir.write("model.mil", mil.as_bytes())?;
        for (key, bytes) in weights {
            dir.write(relative(key)?, bytes)?;
        }
        Ok(dir)
    }

    /// Reads the compile artifacts the framework left (`net.plist`, and `data` if present).
    pub fn artifacts(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for name in ARTIFACTS {
            let p = self.path.join(name);
            match std::fs::read(&p) {
                Ok(b) => out.push((name.to_string(), b)),
                Err(e) if name == "data" && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
            }
        }
        Ok(out)
    }

    /// Writes cached artifacts back, accepting only the names in [`ARTIFACTS`] and requiring
    /// `net.plist`.
    pub fn restore(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        if !files.iter().any(|(n, _)| n == ARTIFACTS[0]) {
            return Err(Error::Device {
                stage: "cache",
                detail: "a cached artifact set has no net.plist".into(),
            });
        }
        for (name, bytes) in files {
            if !ARTIFACTS.contains(&name.as_str()) {
                return Err(Error::Device {
                    stage: "cache",
                    detail: format!("unexpected cached artifact `{name}`"),
                });
            }
            self.write(name, bytes)?;
        }
        Ok(())
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&p, bytes).map_err(|e| Error::io(format!("writing {}", p.display()), e))
    }
}

impl Drop for ModelDir {
    fn drop(&mut self) {
        let Ok(mut t) = self.table.0.lock() else {
            return;
        };
        let last = match t.get_mut(&self.path) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        };
        if last {
            t.remove(&self.path);
            // Best effort: a directory that cannot be removed is only litter in the temp dir.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `@model_path/weights/wq.bin` → `weights/wq.bin`, refusing paths that leave the directory.
pub fn relative(key: &str) -> Result<&str> {
    let rest = key.strip_prefix(MODEL_PATH).unwrap_or("");
    let safe = !rest.is_empty()
        && Path::new(rest)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !safe {
        return Err(Error::Weights {
            path: key.into(),
            detail: format!(
                "the Neural Engine resolves only `{MODEL_PATH}<relative path>` weight files"
            ),
        });
    }
    Ok(rest)
}

fn poisoned() -> Error {
    Error::Device {
        stage: "compile",
        detail: "model directory table poisoned by a panic elsewhere".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(
            relative("@model_path/weights/a.bin").unwrap(),
            "weights/a.bin"
        );
        for bad in [
            "weights/a.bin",
            "@model_path/../x",
            "@model_path//etc/x",
            "@model_path/",
        ] {
            assert!(relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_directory_is_removed_with_its_last_user() {
        let root = std::env::temp_dir().join(format!("ane-model-dir-{}", std::process::id()));
        let table = Arc::new(DirTable::default());
        let w: Vec<WeightFile> = vec![("@model_path/weights/w.bin".into(), vec![1u8, 2].into())];
        let a = ModelDir::create(&table, root.clone(), "mil", &w).unwrap();
        let b = ModelDir::create(&table, root.clone(), "mil", &w).unwrap();
        assert_eq!(std::fs::read(root.join("weights/w.bin")).unwrap(), [1, 2]);
        drop(a);
        assert!(root.join("model.mil").exists());
        drop(b);
        assert!(!root.exists());
    }
}
