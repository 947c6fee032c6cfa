//! Pretokenized token files in the TinyStories shard format: flat little-endian `u16` ids,
//! BOS (1) before each document. Files are memory-mapped and read once into the training
//! stream; [`write_token_file`] writes one.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::TokenData;
use crate::checkpoint::CorpusInfo;
use crate::formats::FormatError;

/// The ids of token files, concatenated in the order given, as training data whose held-out
/// tail is the documents of the last `eval_fraction` of the tokens; with the description of
/// the files (paths, total bytes, SHA-256 of their bytes in order) for the checkpoint.
pub fn read_token_files(
    paths: &[PathBuf],
    eval_fraction: f64,
) -> Result<(TokenData, CorpusInfo), FormatError> {
    let mut hash = Sha256::new();
    let mut ids = Vec::new();
    let mut bytes = 0u64;
    for path in paths {
        let io = |source| FormatError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is only read, within this loop iteration, while the file stays open;
        // a file truncated by another process meanwhile could fault, which memory-mapped
        // readers accept (llama2.c and upstream map token files the same way).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        if map.len() % 2 != 0 {
            return Err(FormatError::invalid(
                &path.display().to_string(),
                "length",
                format!("{} bytes is not a whole number of u16 ids", map.len()),
            ));
        }
        hash.update(&map[..]);
        bytes += map.len() as u64;
        ids.reserve(map.len() / 2);
        ids.extend(
            map.chunks_exact(2)
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
        );
    }
    let name = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let info = CorpusInfo {
        name: name.clone(),
        bytes,
        sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    };
    let data = TokenData::from_ids(ids, eval_fraction)
        .map_err(|e| FormatError::invalid(&name, "eval_fraction", e.to_string()))?;
    Ok((data, info))
}

/// Appends `ids` to `w` as little-endian `u16`; fails on an id above 65535, naming it.
pub fn write_ids(w: &mut impl Write, ids: &[u32]) -> Result<(), FormatError> {
    let mut buf = Vec::with_capacity(ids.len() * 2);
    for &id in ids {
        let v = u16::try_from(id).map_err(|_| {
            FormatError::invalid(
                "tokens",
                "id",
                format!("{id} does not fit a u16 token file"),
            )
        })?;
        buf.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&buf).map_err(|source| FormatError::Io {
        path: PathBuf::from("tokens"),
        source,
    })
}

/// Writes a whole token file atomically (temporary name, fsync, rename).
pub fn write_token_file(path: &Path, ids: &[u32]) -> Result<(), FormatError> {
    let mut buf = Vec::with_capacity(ids.len() * 2);
    write_ids(&mut buf, ids)?;
    crate::formats::write_file_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_concatenate_and_hold_out_whole_documents() {
        let dir = std::env::temp_dir();
        let a = dir.join(format!("ane-shard-a-{}.bin", std::process::id()));
        let b = dir.join(format!("ane-shard-b-{}.bin", std::process::id()));
        write_token_file(&a, &[1, 500, 501, 1, 502]).unwrap();
        write_token_file(&b, &[1, 60000, 7]).unwrap();
        let (d, info) = read_token_files(&[a.clone(), b.clone()], 0.4).unwrap();
        assert_eq!(d.train, vec![1, 500, 501, 1, 502]);
        assert_eq!(d.eval, vec![1, 60000, 7]);
        assert_eq!(info.bytes, 16);
        std::fs::write(&b, [1u8, 0, 2]).unwrap();
        let e = read_token_files(&[a.clone(), b.clone()], 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number of u16"), "{e}");
        assert!(write_token_file(&a, &[70_000])
            .unwrap_err()
            .to_string()
            .contains("70000"));
        let _ = (std::fs::remove_file(a), std::fs::remove_file(b));
    }
}
