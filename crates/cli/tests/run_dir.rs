//! The run directory of `ane-train train` (issue 13): its lock, `--resume`'s directory,
//! checkpoint generations, stale temporary files, failing saves and the report on Ctrl-C.

use std::path::Path;
use std::process::Command;

mod common;
use common::{bin, checkpoint_step, quiet_train, run, tiny, tmp};

/// A short new run of `model` into `out` (`--checkpoint-every 1`, no sample or evaluation).
fn fresh(out: &Path, model: &Path, steps: &str) -> Command {
    let mut c = quiet_train(out, steps);
    c.arg("--model").arg(model);
    c
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[cfg(target_os = "linux")]
#[test]
fn a_busy_directory_is_refused_and_a_stale_lock_taken_over() {
    let d = tmp("lock");
    let model = tiny(&d);
    let out = d.join("run");
    std::fs::create_dir_all(&out).unwrap();
    // A live holder: this test process.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    let me = std::process::id();
    let lock = out.join("lock");
    std::fs::write(
        &lock,
        format!(
            "pid={me}\nstart={start}\nhost={}\ncommand=other-run --x\n",
            host()
        ),
    )
    .unwrap();
    let (o, text) = run(&mut fresh(&out, &model, "2"));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains(&format!("process {me}")), "{text}");
    assert!(text.contains("other-run --x"), "{text}");
    assert!(!out.join("checkpoint.bin").exists(), "{text}");

    // The same lock from a process that is gone: taken over, and released at the end.
    let dead = dead_pid();
    std::fs::write(
        &lock,
        format!("pid={dead}\nstart=1\nhost={}\ncommand=killed\n", host()),
    )
    .unwrap();
    let (o, text) = run(&mut fresh(&out, &model, "2"));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("stale lock"), "{text}");
    assert!(!lock.exists(), "lock not released");
}

#[test]
fn resume_continues_in_its_directory_and_never_replaces_another_run() {
    let d = tmp("resume-dir");
    let model = tiny(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    for dir in [&a, &b] {
        let (o, text) = run(&mut fresh(dir, &model, "3"));
        assert!(o.status.success(), "{text}");
    }
    let elsewhere = d.join("cwd");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (o, text) = run(bin()
        .current_dir(&elsewhere)
        .args([
            "train",
            "--device",
            "cpu",
            "--steps",
            "5",
            "--sample-tokens",
            "0",
        ])
        .arg("--resume")
        .arg(a.join("checkpoint.bin")));
    assert!(o.status.success(), "{text}");
    assert_eq!(checkpoint_step(&a.join("checkpoint.bin")), 5);
    assert!(!elsewhere.join("runs").exists(), "wrote into runs/: {text}");

    // Resuming a's run into b, which holds b's own checkpoint: refused, b untouched.
    let before = std::fs::read(b.join("checkpoint.bin")).unwrap();
    let (o, text) = run(bin()
        .args([
            "train",
            "--device",
            "cpu",
            "--steps",
            "7",
            "--sample-tokens",
            "0",
        ])
        .arg("--resume")
        .arg(a.join("checkpoint.bin"))
        .arg("--out")
        .arg(&b));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("another run's checkpoint"), "{text}");
    assert_eq!(std::fs::read(b.join("checkpoint.bin")).unwrap(), before);
}

#[test]
fn generations_are_kept_and_fresh_runs_never_lose_one() {
    let d = tmp("keep");
    let model = tiny(&d);
    let out = d.join("run");
    let (o, text) = run(fresh(&out, &model, "5").args(["--keep", "3"]));
    assert!(o.status.success(), "{text}");
    assert_eq!(checkpoint_step(&out.join("checkpoint.bin")), 5);
    assert_eq!(checkpoint_step(&out.join("checkpoint.1.bin")), 4);
    assert_eq!(checkpoint_step(&out.join("checkpoint.2.bin")), 3);
    assert!(!out.join("checkpoint.3.bin").exists());

    // Two more fresh runs: each earlier run's checkpoints are moved aside, none lost.
    for _ in 0..2 {
        let (o, text) = run(&mut fresh(&out, &model, "2"));
        assert!(o.status.success(), "{text}");
    }
    assert_eq!(checkpoint_step(&out.join("checkpoint.prev.bin")), 5);
    assert_eq!(checkpoint_step(&out.join("checkpoint.prev.2.bin")), 3);
    assert_eq!(checkpoint_step(&out.join("checkpoint.prev2.bin")), 2);
    assert_eq!(checkpoint_step(&out.join("checkpoint.bin")), 2);

    let (o, text) = run(fresh(&out, &model, "2").args(["--keep", "0"]));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("--keep 0"), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn stale_temporary_files_are_removed_at_start() {
    let d = tmp("temps");
    let model = tiny(&d);
    let out = d.join("run");
    std::fs::create_dir_all(&out).unwrap();
    let stale = out.join(format!("checkpoint.bin.tmp{}", dead_pid()));
    let live = out.join(format!("checkpoint.bin.tmp{}", std::process::id()));
    let unrelated = out.join("notes.tmp-keep");
    for p in [&stale, &live, &unrelated] {
        std::fs::write(p, b"partial").unwrap();
    }
    let (o, text) = run(&mut fresh(&out, &model, "2"));
    assert!(o.status.success(), "{text}");
    assert!(!stale.exists(), "{text}");
    // A live process's write (this test's pid) and other names are left alone.
    assert!(live.exists() && unrelated.exists(), "{text}");
}

#[test]
fn a_failed_periodic_save_warns_and_a_failed_final_save_is_an_error() {
    let d = tmp("fail-save");
    let model = tiny(&d);
    let out = d.join("run");
    // Saves 1-3 are periodic, 4 is the final one.
    let (o, text) = run(fresh(&out, &model, "4").env("ANE_TRAIN_TEST_FAIL_SAVE", "2"));
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("warning: checkpoint at update 2 failed"),
        "{text}"
    );
    assert_eq!(checkpoint_step(&out.join("checkpoint.bin")), 4);

    let out = d.join("run2");
    let (o, text) = run(fresh(&out, &model, "4").env("ANE_TRAIN_TEST_FAIL_SAVE", "4"));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("checkpoint.bin"), "{text}");
    // The previous good checkpoint is intact.
    assert_eq!(checkpoint_step(&out.join("checkpoint.bin")), 3);

    let (o, text) = run(fresh(&out, &model, "4").env("ANE_TRAIN_TEST_FAIL_SAVE", "zero"));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("ANE_TRAIN_TEST_FAIL_SAVE"), "{text}");
}

/// Ctrl-C writes the checkpoint and `report.json` (marked interrupted), exits 130, and
/// releases the lock.
#[cfg(unix)]
#[test]
fn ctrl_c_writes_the_report() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let d = tmp("ctrl-c");
    let model = tiny(&d);
    let out = d.join("run");
    let mut child = fresh(&out, &model, "1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("update      1") {
            break;
        }
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["chain"]["processes"], 1);
    assert!(report["updates"].as_u64().unwrap() >= 1);
    assert!(!out.join("lock").exists());
}

/// A Baked run on `ane-sim` with a small compile budget restarts itself (same pid, so it
/// keeps its lock); the report of the process that ends it covers the whole chain.
#[cfg(unix)]
#[test]
fn the_report_covers_every_process_of_a_restart_chain() {
    let d = tmp("chain");
    let model = tiny(&d);
    let out = d.join("run");
    let (o, text) = run(bin()
        .env("ANE_MAX_COMPILES", "25")
        .args([
            "train", "--device", "ane-sim", "--mode", "baked", "--steps", "3",
        ])
        .args(["--sample-tokens", "0", "--eval-every", "0"])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("restart 1 of this run"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["chain"]["processes"], 2, "{report}");
    assert_eq!(report["chain"]["restarts"], 1);
    assert_eq!(report["chain"]["updates"], 3);
    assert!(report["updates"].as_u64().unwrap() < 3);
    assert!(!out.join("lock").exists());
}
