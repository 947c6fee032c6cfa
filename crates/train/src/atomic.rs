//! Writing a file so that a crash never leaves it half-written under its real name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes `path` through `write`: into a temporary file beside it (buffered), synced, renamed
/// over `path`, then the directory synced (where the platform allows). On error the temporary
/// file is removed and `path` is untouched.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        write(&mut w)?;
        w.flush()?;
        test_slow_write();
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable; not every platform can open a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Name of the test-only hook read by [`slow_write_ms`].
pub const SLOW_WRITE_VAR: &str = "ANE_TRAIN_TEST_SLOW_WRITE_MS";

/// Test-only hook: `ANE_TRAIN_TEST_SLOW_WRITE_MS=<ms>` (0 to 60000) pauses every atomic write
/// this long after the temporary file's bytes are written and before it is synced and
/// renamed, so a test can kill a writer while its temporary file exists. `Ok(None)` when
/// unset; the offending value when it is not a whole number of milliseconds in range (the
/// CLI refuses it at start; a write ignores it).
pub fn slow_write_ms() -> Result<Option<u64>, String> {
    match std::env::var(SLOW_WRITE_VAR) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms <= 60_000 => Ok(Some(ms)),
            _ => Err(v),
        },
    }
}

/// The pause of [`slow_write_ms`], if any.
fn test_slow_write() {
    if let Ok(Some(ms)) = slow_write_ms() {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
