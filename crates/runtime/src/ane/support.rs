//! The three services the driver borrows from the rest of the runtime, behind small traits so
//! tests can watch them: the compile budget ([`crate::budget`], rule 11), the surface pool
//! ([`crate::pool`]) and the compile cache ([`crate::cache`]).

use std::fmt;

pub use crate::budget::CompileCounter;
use crate::cache::{CacheKey, CompileCache};
use crate::error::Result;
use crate::pool::SurfacePool;

/// Reuses device buffers by allocation size.
pub trait SurfaceRecycler<T>: Send + Sync + fmt::Debug {
    /// A buffer of exactly `bytes` bytes given back earlier, if any (contents unspecified).
    fn take(&self, bytes: usize) -> Option<T>;
    /// Gives back a buffer of `bytes` bytes for reuse, or drops (releases) it.
    fn give(&self, bytes: usize, buffer: T);
}

impl<M: Send> SurfaceRecycler<M> for SurfacePool<M> {
    fn take(&self, bytes: usize) -> Option<M> {
        SurfacePool::take(self, bytes)
    }
    fn give(&self, bytes: usize, buffer: M) {
        // A full pool hands the buffer back; dropping it releases the IOSurface.
        drop(SurfacePool::give(self, bytes, buffer));
    }
}

/// Stores the files the framework leaves in a model's temp dir after compiling (`net.plist`,
/// and `data` when the model has weights). The cache may be a no-op: callers keep the Kernel
/// they get back rather than relying on a later hit.
pub trait ArtifactCache: Send + Sync + fmt::Debug {
    /// The cached files for `key`, as (file name, bytes).
    fn get(&self, key: &CacheKey) -> Option<Vec<(String, Vec<u8>)>>;
    /// Stores `files` for `key`.
    fn put(&self, key: &CacheKey, files: &[(String, Vec<u8>)]) -> Result<()>;
}

impl ArtifactCache for CompileCache {
    fn get(&self, key: &CacheKey) -> Option<Vec<(String, Vec<u8>)>> {
        CompileCache::get(self, key).map(|e| e.files)
    }
    fn put(&self, key: &CacheKey, files: &[(String, Vec<u8>)]) -> Result<()> {
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        CompileCache::put(self, key, &files)
    }
}

/// A cache that never hits.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

impl ArtifactCache for NoCache {
    fn get(&self, _key: &CacheKey) -> Option<Vec<(String, Vec<u8>)>> {
        None
    }
    fn put(&self, _key: &CacheKey, _files: &[(String, Vec<u8>)]) -> Result<()> {
        Ok(())
    }
}
