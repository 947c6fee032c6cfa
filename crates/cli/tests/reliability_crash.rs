//! Crash safety of `ane-train train` (issue 13): a run killed with SIGKILL at 20 seeded random
//! moments — during updates and during checkpoint writes, which a test-only pause makes long —
//! resumes each time from a complete checkpoint, and its final checkpoint is byte-identical to
//! an uninterrupted run's.

#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{quiet_train, run, tiny, tmp};

/// Updates of the run; every one is checkpointed.
const STEPS: &str = "600";

/// `ane-train train` into `out`: a new run of `model`, or with `resume` its continuation.
fn train(out: &Path, model: &Path, resume: bool) -> Command {
    let mut c = quiet_train(out, STEPS);
    c.args(["--log-every", "0"]);
    if resume {
        c.arg("--resume").arg(out.join("checkpoint.bin"));
    } else {
        c.arg("--model").arg(model);
    }
    c
}

/// A small seeded generator (xorshift64), so the kill moments are the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn kill_9_at_twenty_moments_loses_nothing_and_ends_byte_identical() {
    let d = tmp("crash");
    let model = tiny(&d);
    let (reference, crashed) = (d.join("reference"), d.join("crashed"));
    let (out, text) = run(&mut train(&reference, &model, false));
    assert!(out.status.success(), "{text}");
    let want = std::fs::read(reference.join("checkpoint.bin")).unwrap();

    let ckpt = crashed.join("checkpoint.bin");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut steps_seen = Vec::new();
    let mut mid_write = 0;
    for kill in 0..20 {
        let mut cmd = train(&crashed, &model, ckpt.exists());
        if ckpt.exists() {
            // The checkpoint under the real name always loads: never a half-written file.
            let c = ane_train::checkpoint::read(&ckpt)
                .unwrap_or_else(|e| panic!("kill {kill}: checkpoint does not load: {e}"));
            steps_seen.push(c.header.step);
        }
        // Every checkpoint write pauses (15 or 40 ms, about as long as an update or longer),
        // so kills land both mid-write and mid-update, and the run cannot finish early.
        let pause = if kill % 2 == 0 { "40" } else { "15" };
        cmd.env("ANE_TRAIN_TEST_SLOW_WRITE_MS", pause);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {kill}: the run ended by itself ({status}) before it was killed"
        );
        mid_write += usize::from(!temps(&crashed).is_empty());
    }
    // Some kills landed inside a checkpoint write (they left a temporary file).
    assert!(mid_write >= 1, "none of the 20 kills landed mid-write");
    assert!(
        steps_seen.last().copied().unwrap_or(0) > 0,
        "no progress across the kills: {steps_seen:?}"
    );
    // Resumed runs continue; a step count never goes back.
    assert!(
        steps_seen.windows(2).all(|w| w[0] <= w[1]),
        "{steps_seen:?}"
    );

    let (out, text) = run(&mut train(&crashed, &model, true));
    assert!(out.status.success(), "final resume failed:\n{text}");
    assert_eq!(
        temps(&crashed),
        Vec::<String>::new(),
        "temporary files survived"
    );
    let got = std::fs::read(&ckpt).unwrap();
    assert!(
        got == want,
        "final checkpoint differs from the uninterrupted run's"
    );
    assert!(!crashed.join("lock").exists(), "the lock outlived the run");
}
