//! The on-disk compile cache: a directory of validated entries, each a small set of named files
//! (e.g. `net.plist`, `data`) keyed by everything that determines a compile's result.
//!
//! Fixes the defects of upstream PR #22's cache (`reference/ane-pitfalls.md` §B): the key covers
//! the program text, the weight bytes, the device kind, the OS build and the compiler version;
//! writers and eviction are serialised across processes by a file lock; the cache is bounded in
//! size; and nothing is loaded without validating it.
//!
//! Layout of the cache directory:
//! - `entries/<key hex>.entry` — one entry, one file: a text manifest (format version, every key
//!   field, each file's name, length and SHA-256, then the SHA-256 of the manifest itself),
//!   followed by the files' bytes in manifest order;
//! - `tmp/` — entries being written (a crashed writer's leftovers are swept by the next writer);
//! - `lock` — the lock file; [`CompileCache::put`], eviction, discarding and
//!   [`CompileCache::clear`] hold an exclusive [`File::lock`] on it.
//!
//! Writes go to `tmp/`, are fsynced, then renamed over `entries/<key hex>.entry`; a rename
//! replaces the whole file at once, so a reader opens either the old or the new complete entry,
//! and readers need no lock. Concurrent writers of one key: the last writer to take the lock wins;
//! every version a reader can see is complete. Last use (for LRU eviction) is the entry file's
//! modification time, which the cache sets itself on every put and every hit (never the
//! filesystem's atime); its precision is the filesystem's (nanoseconds on ext4 and APFS).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// First word of every manifest; the number after it is [`FORMAT_VERSION`].
const FORMAT: &str = "ane-compile-cache-entry";
/// Manifest format version; an entry of another version is discarded.
const FORMAT_VERSION: u32 = 1;
/// Most files in one entry.
const MAX_FILES: usize = 64;
/// Longest manifest line after the key fields (a file line), in bytes.
const MAX_LINE: usize = 512;

/// SHA-256 of `bytes`: the hash the cache uses for program text, weights and files.
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a key string on one manifest line: printable ASCII other than `%` as is, every other
/// byte as `%XX`. Injective, so comparing escaped forms compares the strings.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `name` may name a file of an entry: 1 to 255 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Everything that determines a compile's result. Two keys are equal exactly when all five
/// fields are; [`CacheKey::hex`] (a SHA-256 over all of them) names the entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    program_hash: [u8; 32],
    weights_hash: [u8; 32],
    device: String,
    os_build: String,
    compiler: String,
    digest: [u8; 32],
}

impl CacheKey {
    /// A key for `program_text` (MIL text, hashed here) compiled with weights whose bytes hash to
    /// `weights_hash` (see [`content_hash`]; all zeros for a weight-free program) for `device`
    /// (a device kind name), on OS build `os_build`, by compiler version `compiler`.
    pub fn new(
        program_text: &str,
        weights_hash: [u8; 32],
        device: &str,
        os_build: &str,
        compiler: &str,
    ) -> Self {
        let program_hash = content_hash(program_text.as_bytes());
        let mut h = Sha256::new();
        h.update(b"ane-train compile cache key v1\0");
        h.update(program_hash);
        h.update(weights_hash);
        for field in [device, os_build, compiler] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        CacheKey {
            program_hash,
            weights_hash,
            device: device.to_string(),
            os_build: os_build.to_string(),
            compiler: compiler.to_string(),
            digest: h.finalize().into(),
        }
    }

    /// The entry name: the key's SHA-256 digest as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.digest)
    }

    /// The manifest's first lines for this key: format, version and every key field.
    fn manifest_prefix(&self) -> String {
        format!(
            "{FORMAT} {FORMAT_VERSION}\nkey {}\nprogram {}\nweights {}\ndevice {}\nos-build {}\ncompiler {}\n",
            self.hex(),
            hex(&self.program_hash),
            hex(&self.weights_hash),
            escape(&self.device),
            escape(&self.os_build),
            escape(&self.compiler),
        )
    }
}

/// A validated entry read from the cache: its files, in the order they were put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// `(file name, contents)` pairs; names are unique.
    pub files: Vec<(String, Vec<u8>)>,
}

impl CacheEntry {
    /// The contents of the file called `name`, if the entry has one.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes.as_slice())
    }
}

/// Counters of one [`CompileCache`] value (this process only), read by [`CompileCache::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// [`CompileCache::get`] calls that returned a valid entry.
    pub hits: u64,
    /// [`CompileCache::get`] calls that returned `None` (absent or discarded entry).
    pub misses: u64,
    /// Reads that found an entry failing validation (corrupt, or torn — which atomic writes
    /// rule out). Each such entry is re-read under the lock and deleted if still invalid.
    pub invalid_reads: u64,
    /// Entries that failed validation and were deleted by this value.
    pub discarded: u64,
    /// Entries evicted by this value to keep the cache under its size bound.
    pub evictions: u64,
}

/// What the cache holds on disk now, read by [`CompileCache::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheUsage {
    /// Number of entries.
    pub entries: usize,
    /// Total size of the entry files (manifests and file contents), in bytes.
    pub bytes: u64,
}

/// An on-disk compile cache bounded to `max_bytes`; safe to share between threads and between
/// processes that open the same directory.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
    /// The open lock file; the mutex serialises this process's threads, [`File::lock`] processes.
    lock_file: Mutex<File>,
    temp_seq: AtomicU64,
    stats: Mutex<CacheStats>,
}

/// The exclusive directory lock, released on drop.
struct DirLock<'a>(MutexGuard<'a, File>);

impl Drop for DirLock<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; the file stays open for the next operation.
        let _ = self.0.unlock();
    }
}

/// What reading an entry file found.
enum Found {
    Missing,
    Corrupt,
    Valid(CacheEntry, File),
}

impl CompileCache {
    /// Opens (creating it and its subdirectories if needed) the cache in `dir`, which keeps the
    /// total size of its entries at most `max_bytes` bytes (`0` stores nothing).
    ///
    /// Errors: [`Error::Io`] when the directory or its lock file cannot be created.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        for sub in ["entries", "tmp"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| {
                Error::io(format!("creating cache directory {}", path.display()), e)
            })?;
        }
        let lock_path = dir.join("lock");
        let lock_file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening cache lock {}", lock_path.display()), e))?;
        Ok(CompileCache {
            dir,
            max_bytes,
            lock_file: Mutex::new(lock_file),
            temp_seq: AtomicU64::new(0),
            stats: Mutex::new(CacheStats::default()),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The file holding `key`'s entry (whether or not it exists); for diagnostics and tests.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir
            .join("entries")
            .join(format!("{}.entry", key.hex()))
    }

    /// The entry for `key`, after checking its manifest (version and every key field) and every
    /// file's length and SHA-256, and marking it used now. An entry that fails a check is deleted
    /// and counted as discarded, and `None` is returned: a corrupt entry is never loaded.
    pub fn get(&self, key: &CacheKey) -> Option<CacheEntry> {
        let path = self.entry_path(key);
        let mut found = read_entry(&path, key);
        if matches!(found, Found::Corrupt) {
            self.count(|s| s.invalid_reads += 1);
            found = self.discard(&path, key);
        }
        match found {
            Found::Valid(entry, file) => {
                // Best effort: a failed touch only makes LRU eviction less exact.
                let _ = file.set_modified(SystemTime::now());
                self.count(|s| s.hits += 1);
                Some(entry)
            }
            Found::Missing | Found::Corrupt => {
                self.count(|s| s.misses += 1);
                None
            }
        }
    }

    /// Re-reads a corrupt entry under the lock (a writer may have replaced it meanwhile) and
    /// deletes it if it is still corrupt. Returns what the second read found.
    fn discard(&self, path: &Path, key: &CacheKey) -> Found {
        let Ok(_lock) = self.lock() else {
            return Found::Corrupt;
        };
        let found = read_entry(path, key);
        if matches!(found, Found::Corrupt) && fs::remove_file(path).is_ok() {
            self.count(|s| s.discarded += 1);
        }
        found
    }

    /// Stores `files` (`(name, contents)` pairs) as the entry for `key`, replacing any entry of
    /// that key, then evicts least-recently-used entries until the cache is within `max_bytes`.
    /// An entry larger than `max_bytes` on its own is not stored (and `Ok` is returned).
    ///
    /// Errors: [`Error::Io`] of kind `InvalidInput` when a name is not 1 to 255 bytes of
    /// `[A-Za-z0-9._-]`, is `.` or `..`, or repeats, or there are more than 64 files;
    /// [`Error::Io`] when writing fails (nothing is left under the entry's name then).
    pub fn put(&self, key: &CacheKey, files: &[(&str, &[u8])]) -> Result<()> {
        check_names(files)?;
        let header = encode_manifest(key, files);
        let size = header.len() as u64 + files.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        if size > self.max_bytes {
            return Ok(());
        }
        let lock = self.lock()?;
        self.sweep_temp();
        let temp = self.dir.join("tmp").join(format!(
            "{}.{}-{}.partial",
            key.hex(),
            std::process::id(),
            self.temp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let path = self.entry_path(key);
        let written = write_entry(&temp, &header, files).and_then(|()| {
            fs::rename(&temp, &path)?;
            sync_dir(&self.dir.join("entries"))
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::io(
                format!("writing cache entry {}", path.display()),
                e,
            ));
        }
        self.evict(&lock)
    }

    /// Counters of this value since it was opened.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, event: impl FnOnce(&mut CacheStats)) {
        event(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Number and total size of the entries on disk now.
    ///
    /// Errors: [`Error::Io`] when the entries directory cannot be listed.
    pub fn usage(&self) -> Result<CacheUsage> {
        let entries = self.list_entries()?;
        Ok(CacheUsage {
            entries: entries.len(),
            bytes: entries.iter().map(|e| e.1).sum(),
        })
    }

    /// Deletes every entry (and any leftover partial write). The counters are kept.
    ///
    /// Errors: [`Error::Io`] when the lock cannot be taken or an entry cannot be deleted.
    pub fn clear(&self) -> Result<()> {
        let _lock = self.lock()?;
        self.sweep_temp();
        for (path, ..) in self.list_entries()? {
            remove_if_present(&path)
                .map_err(|e| Error::io(format!("deleting cache entry {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Takes the exclusive lock: first this process's mutex, then the file lock.
    fn lock(&self) -> Result<DirLock<'_>> {
        let file = self
            .lock_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        file.lock()
            .map_err(|e| Error::io(format!("locking compile cache {}", self.dir.display()), e))?;
        Ok(DirLock(file))
    }

    /// Deletes partial writes left by crashed writers. Call with the lock held: a live writer
    /// holds the lock while its partial file exists, so every file found is a leftover.
    fn sweep_temp(&self) {
        if let Ok(dir) = fs::read_dir(self.dir.join("tmp")) {
            for item in dir.flatten() {
                let _ = fs::remove_file(item.path());
            }
        }
    }

    /// Every entry file with its size in bytes and last use.
    fn list_entries(&self) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
        let dir = self.dir.join("entries");
        let listing = fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing cache entries {}", dir.display()), e))?;
        let mut entries = Vec::new();
        for item in listing.flatten() {
            let path = item.path();
            if path.extension().is_none_or(|ext| ext != "entry") {
                continue;
            }
            // An entry deleted since the listing is simply skipped.
            if let Ok(meta) = item.metadata() {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                entries.push((path, meta.len(), used));
            }
        }
        Ok(entries)
    }

    /// Deletes least-recently-used entries (ties: by name) until the total is within the bound.
    fn evict(&self, _lock: &DirLock<'_>) -> Result<()> {
        let mut entries = self.list_entries()?;
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.max_bytes {
            return Ok(());
        }
        entries.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        for (path, len, _) in entries {
            if total <= self.max_bytes {
                break;
            }
            remove_if_present(&path)
                .map_err(|e| Error::io(format!("evicting cache entry {}", path.display()), e))?;
            total -= len;
            self.count(|s| s.evictions += 1);
        }
        Ok(())
    }
}

fn check_names(files: &[(&str, &[u8])]) -> Result<()> {
    let repeated = |i: usize, name: &str| files[..i].iter().any(|(n, _)| *n == name);
    let bad = files
        .iter()
        .enumerate()
        .any(|(i, (name, _))| !valid_name(name) || repeated(i, name));
    if files.len() <= MAX_FILES && !bad {
        return Ok(());
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    let msg = format!(
        "entry files {names:?}: at most {MAX_FILES}, with distinct names of 1 to 255 bytes of \
         [A-Za-z0-9._-], not `.` or `..`"
    );
    let source = io::Error::new(io::ErrorKind::InvalidInput, msg);
    Err(Error::io("storing a compile cache entry", source))
}

/// The manifest of an entry: key lines, `files <n>`, one `file <name> <len> <sha256>` line per
/// file, then `manifest-sha256 <sha256 of all the lines before>`.
fn encode_manifest(key: &CacheKey, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = key.manifest_prefix();
    m.push_str(&format!("files {}\n", files.len()));
    for (name, bytes) in files {
        let sum = hex(&content_hash(bytes));
        m.push_str(&format!("file {name} {} {sum}\n", bytes.len()));
    }
    let sum = hex(&content_hash(m.as_bytes()));
    m.push_str(&format!("manifest-sha256 {sum}\n"));
    m.into_bytes()
}

/// Checks an entry file's bytes against `key` and returns its files, or `None` if any check fails.
fn decode_entry(bytes: &[u8], key: &CacheKey) -> Option<Vec<(String, Vec<u8>)>> {
    let prefix = key.manifest_prefix();
    let mut pos = prefix.len();
    if !bytes.starts_with(prefix.as_bytes()) {
        return None;
    }
    let count: usize = next_line(bytes, &mut pos)?
        .strip_prefix("files ")?
        .parse()
        .ok()?;
    if count > MAX_FILES {
        return None;
    }
    let mut listed = Vec::with_capacity(count);
    for _ in 0..count {
        let mut fields = next_line(bytes, &mut pos)?
            .strip_prefix("file ")?
            .split(' ');
        let name = fields.next().filter(|n| valid_name(n))?;
        let len: usize = fields.next()?.parse().ok()?;
        let sum = fields.next()?;
        if fields.next().is_some() {
            return None;
        }
        listed.push((name, len, sum));
    }
    let manifest_end = pos;
    let sum = next_line(bytes, &mut pos)?.strip_prefix("manifest-sha256 ")?;
    if sum != hex(&content_hash(&bytes[..manifest_end])) {
        return None;
    }
    let mut payload = &bytes[pos..];
    let total = listed
        .iter()
        .try_fold(0usize, |acc, f| acc.checked_add(f.1))?;
    if total != payload.len() {
        return None;
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::with_capacity(count);
    for (name, len, sum) in listed {
        let (data, rest) = payload.split_at(len);
        if sum != hex(&content_hash(data)) || files.iter().any(|(n, _)| n == name) {
            return None;
        }
        files.push((name.to_string(), data.to_vec()));
        payload = rest;
    }
    Some(files)
}

/// The line of at most [`MAX_LINE`] bytes starting at `*pos`, without its `\n`; moves `*pos` past it.
fn next_line<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let window = bytes.get(*pos..)?;
    let window = &window[..window.len().min(MAX_LINE)];
    let end = window.iter().position(|&b| b == b'\n')?;
    *pos += end + 1;
    std::str::from_utf8(&window[..end]).ok()
}

fn read_entry(path: &Path, key: &CacheKey) -> Found {
    let mut bytes = Vec::new();
    let file = match File::open(path) {
        Ok(mut file) => match file.read_to_end(&mut bytes) {
            Ok(_) => file,
            Err(_) => return Found::Corrupt,
        },
        Err(_) => return Found::Missing,
    };
    match decode_entry(&bytes, key) {
        Some(files) => Found::Valid(CacheEntry { files }, file),
        None => Found::Corrupt,
    }
}

/// Writes a complete entry to `temp`, stamps its last use, and flushes it to disk.
fn write_entry(temp: &Path, header: &[u8], files: &[(&str, &[u8])]) -> io::Result<()> {
    let mut file = File::create_new(temp)?;
    file.write_all(header)?;
    for (_, bytes) in files {
        file.write_all(bytes)?;
    }
    file.set_modified(SystemTime::now())?;
    file.sync_all()
}

/// Flushes a directory's entries (a rename in it) to disk.
/// (Unix only: elsewhere a directory cannot be opened as a file.)
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
