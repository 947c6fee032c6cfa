//! The run directory of `ane-train train`: a lock so that two runs never share it, removal of
//! temporary files left by killed writers, checkpoint generations (`--keep`), and the moves
//! that keep a previous run's checkpoint when a fresh run starts in its directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Name of the lock file inside a run directory.
pub(crate) const LOCK_NAME: &str = "lock";

/// The holder of a lock: process id, its start time (clock ticks since boot, from
/// `/proc/<pid>/stat`; 0 where unknown), host name and command line.
#[derive(Debug, Clone, PartialEq)]
struct Holder {
    pid: u32,
    start: u64,
    host: String,
    command: String,
}

impl Holder {
    fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start: start_time(pid).unwrap_or(0),
            host: host_name(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    fn to_text(&self) -> String {
        format!(
            "pid={}\nstart={}\nhost={}\ncommand={}\n",
            self.pid, self.start, self.host, self.command
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
        };
        Some(Holder {
            pid: field("pid")?.trim().parse().ok()?,
            start: field("start")?.trim().parse().ok()?,
            host: field("host")?.to_string(),
            command: field("command").unwrap_or("").to_string(),
        })
    }

    /// Whether this holder's process is certainly gone: same host, and its pid is not alive
    /// or now belongs to a process that started at another time (pid reuse).
    fn is_stale(&self) -> bool {
        if self.host != host_name() || !cfg!(target_os = "linux") {
            return false;
        }
        match start_time(self.pid) {
            None => true,
            Some(t) => self.start != 0 && t != self.start,
        }
    }
}

/// Start time of process `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`),
/// or `None` when the process does not exist (or the platform has no `/proc`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// A held run-directory lock; dropping it removes the lock file (if it is still ours).
#[derive(Debug)]
pub(crate) struct RunLock {
    path: PathBuf,
    me: Holder,
}

impl RunLock {
    /// Takes the lock of directory `dir` (created with `O_EXCL`, so two processes never both
    /// succeed). A lock held by this very process (a compile-budget restart re-executes the
    /// same pid) is kept; a stale one (its process is gone) is taken over with a note; a live
    /// one is refused with a message naming its process.
    pub(crate) fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_NAME);
        let me = Holder::me();
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(me.to_text().as_bytes())
                        .and_then(|_| f.sync_all())
                        .with_context(|| format!("writing the run lock {}", path.display()))?;
                    return Ok(RunLock { path, me });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating the run lock {}", path.display()))
                }
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Released between our attempt and the read: try again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading the run lock {}", path.display()))
                }
            };
            let Some(other) = Holder::parse(&text) else {
                bail!(
                    "{} exists but is not a run lock this program wrote; if no run uses {}, \
                     remove it",
                    path.display(),
                    dir.display()
                );
            };
            if other.pid == me.pid && other.start == me.start && other.host == me.host {
                // Our own lock, handed over across a restart (exec keeps the pid).
                std::fs::write(&path, me.to_text())
                    .with_context(|| format!("updating the run lock {}", path.display()))?;
                return Ok(RunLock { path, me });
            }
            if other.is_stale() {
                println!(
                    "  note: taking over the stale lock {} of process {} (no longer running): {}",
                    path.display(),
                    other.pid,
                    other.command
                );
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the stale lock {}", path.display()))?;
                continue;
            }
            bail!(
                "{} is in use by process {} on {} ({}); wait for it to end, pick another --out, \
                 or remove {} if that process is gone",
                dir.display(),
                other.pid,
                if other.host.is_empty() {
                    "this host"
                } else {
                    &other.host
                },
                other.command,
                path.display()
            );
        }
        bail!(
            "could not take the run lock {}: it keeps changing",
            path.display()
        )
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| Holder::parse(&t))
            .is_some_and(|h| h.pid == self.me.pid && h.start == self.me.start);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The writer pid of `name` if it is a temporary file of `ane_train::atomic::write_atomic`
/// (`<file>.tmp<pid>`).
fn temp_writer(name: &str) -> Option<u32> {
    let (base, pid) = name.rsplit_once(".tmp")?;
    if base.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes from `dir` (not its subdirectories) the temporary files of atomic writes whose
/// writer is this process or a process no longer alive; returns the names removed.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<Vec<String>> {
    let me = std::process::id();
    let mut removed = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_writer(&name) else {
            continue;
        };
        let dead = cfg!(target_os = "linux") && start_time(pid).is_none();
        if (pid == me || dead) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing the stale temporary file {name}"))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Path of generation `k` of the checkpoint in `dir`: 0 is `checkpoint.bin` (the newest),
/// `k ≥ 1` is `checkpoint.<k>.bin` (`k` saves older).
pub(crate) fn generation(dir: &Path, k: usize) -> PathBuf {
    if k == 0 {
        dir.join("checkpoint.bin")
    } else {
        dir.join(format!("checkpoint.{k}.bin"))
    }
}

/// Before a save: shifts the older generations up by one (dropping the one past `keep`
/// total) and hard-links (else copies) `checkpoint.bin` as generation 1, so `checkpoint.bin`
/// exists at every moment. `keep` ≥ 1 is the number of generations kept, the newest included.
pub(crate) fn rotate(dir: &Path, keep: usize) -> Result<()> {
    let newest = generation(dir, 0);
    if keep < 2 || !newest.exists() {
        return Ok(());
    }
    let oldest = generation(dir, keep - 1);
    if oldest.exists() {
        std::fs::remove_file(&oldest)
            .with_context(|| format!("removing the oldest checkpoint {}", oldest.display()))?;
    }
    for k in (1..keep - 1).rev() {
        let from = generation(dir, k);
        if from.exists() {
            let to = generation(dir, k + 1);
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
    }
    let first = generation(dir, 1);
    if std::fs::hard_link(&newest, &first).is_err() {
        std::fs::copy(&newest, &first)
            .with_context(|| format!("copying {} to {}", newest.display(), first.display()))?;
    }
    Ok(())
}

/// A fresh run in `dir`: moves the checkpoints of the run that was there (all generations)
/// aside to `checkpoint.prev.bin`, `checkpoint.prev2.bin`, … (the first free name; older
/// generations `checkpoint.prev<n>.<k>.bin`),
/// so no earlier run's checkpoint is ever lost. Returns the new name of the newest, if any.
pub(crate) fn move_previous_run(dir: &Path) -> Result<Option<PathBuf>> {
    if !generation(dir, 0).exists() {
        return Ok(None);
    }
    // The first earlier run keeps the name earlier versions gave it, `checkpoint.prev.bin`.
    let prev = |n: u32, k: usize| {
        let tag = if n == 1 {
            "prev".to_string()
        } else {
            format!("prev{n}")
        };
        dir.join(if k == 0 {
            format!("checkpoint.{tag}.bin")
        } else {
            format!("checkpoint.{tag}.{k}.bin")
        })
    };
    let n = (1..u32::MAX)
        .find(|&n| !prev(n, 0).exists() && !prev(n, 1).exists())
        .context("no free name for the previous run's checkpoint")?;
    let mut k = 0;
    while generation(dir, k).exists() {
        let (from, to) = (generation(dir, k), prev(n, k));
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        k += 1;
    }
    Ok(Some(prev(n, 0)))
}

/// `--resume <from>` writing into `dir`: refuses when `dir` holds a checkpoint that is a
/// different file with different bytes (another run's), which the resumed run would replace.
pub(crate) fn check_resume_target(from: &Path, dir: &Path) -> Result<()> {
    let target = generation(dir, 0);
    if !target.exists() {
        return Ok(());
    }
    let same_file = match (from.canonicalize(), target.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same_file {
        return Ok(());
    }
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    if read(from)? != read(&target)? {
        bail!(
            "--out {} holds another run's checkpoint {}, which resuming {} would replace; pick \
             another --out, or leave --out away to continue in {}'s own directory",
            dir.display(),
            target.display(),
            from.display(),
            from.display()
        );
    }
    Ok(())
}

/// Saves the run's checkpoints into its directory: generations rotated first (`--keep`),
/// then `checkpoint.bin` written atomically.
pub(crate) struct Saver {
    dir: PathBuf,
    keep: usize,
    fail_at: Option<u64>,
    attempts: u64,
}

impl Saver {
    /// A saver into `dir` keeping `keep` ≥ 1 generations (`--keep`; 0 is refused).
    pub(crate) fn new(dir: &Path, keep: usize) -> Result<Saver> {
        if keep == 0 {
            bail!("--keep 0: at least one checkpoint (the newest) must be kept");
        }
        if let Err(v) = ane_train::atomic::slow_write_ms() {
            let var = ane_train::atomic::SLOW_WRITE_VAR;
            bail!("{var}={v:?}: expected milliseconds, 0 to 60000");
        }
        Ok(Saver {
            dir: dir.to_path_buf(),
            keep,
            fail_at: test_fail_save()?,
            attempts: 0,
        })
    }

    /// Path of the newest checkpoint, `<dir>/checkpoint.bin`.
    pub(crate) fn path(&self) -> PathBuf {
        generation(&self.dir, 0)
    }

    /// Writes `trainer`'s checkpoint. On error `checkpoint.bin` is the previous good one.
    pub(crate) fn save(&mut self, trainer: &ane_train::trainer::Trainer) -> Result<()> {
        self.attempts += 1;
        let path = self.path();
        if self.fail_at == Some(self.attempts) {
            bail!(
                "writing {}: simulated failure (ANE_TRAIN_TEST_FAIL_SAVE={})",
                path.display(),
                self.attempts
            );
        }
        rotate(&self.dir, self.keep)?;
        trainer
            .save(&path)
            .with_context(|| format!("writing the checkpoint {}", path.display()))
    }
}

/// Test-only hook: `ANE_TRAIN_TEST_FAIL_SAVE=<n>` makes this process's `n`-th checkpoint
/// save (1-based) fail as if the disk were full. Unset: `None`; a value that is not a
/// positive integer is refused.
pub(crate) fn test_fail_save() -> Result<Option<u64>> {
    const VAR: &str = "ANE_TRAIN_TEST_FAIL_SAVE";
    match std::env::var(VAR) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => bail!("{VAR}={v:?}: expected a positive integer (the save to fail, 1-based)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_match_only_the_writers_pattern() {
        assert_eq!(temp_writer("checkpoint.bin.tmp123"), Some(123));
        assert_eq!(temp_writer("report.json.tmp7"), Some(7));
        assert_eq!(temp_writer("checkpoint.bin.tmp"), None);
        assert_eq!(temp_writer("notes.tmpx1"), None);
        assert_eq!(temp_writer(".tmp12"), None);
    }

    #[test]
    fn a_lock_text_round_trips() {
        let h = Holder {
            pid: 42,
            start: 99,
            host: "box".into(),
            command: "ane-train train --steps 3".into(),
        };
        assert_eq!(Holder::parse(&h.to_text()), Some(h));
        assert_eq!(Holder::parse("garbage"), None);
    }
}
