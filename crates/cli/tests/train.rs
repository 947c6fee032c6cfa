//! `ane-train train` and `ane-train sample` end to end: a short run writes a checkpoint, a
//! JSON report and a sample; a resumed run continues it; a Baked run on `ane-sim` with a small
//! compile budget restarts itself until done; bad input is refused with clear messages.

use std::process::Command;

mod common;
use common::{bin, checkpoint_step, run, tiny, tmp};

/// `ane-train train <args> --out <d>`.
fn train(d: &std::path::Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("train").args(args).arg("--out").arg(d);
    c
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

#[test]
fn a_short_run_writes_checkpoint_report_and_sample_and_resumes() {
    let d = tmp("short");
    let model = tiny(&d);
    let m = path(&model);
    let cpu = ["--device", "cpu", "--model", m];
    let (out, text) = run(train(&d, &cpu).args([
        "--steps",
        "30",
        "--sample-tokens",
        "60",
        "--eval-every",
        "10",
    ]));
    assert!(out.status.success(), "{text}");
    for want in [
        "update     10",
        "held-out",
        "efficiency",
        "tokens/s",
        "sample",
        "Once upon a time",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let ckpt = d.join("checkpoint.bin");
    assert_eq!(checkpoint_step(&ckpt), 30);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["updates"], 30);
    assert_eq!(report["tokens"], 30 * 32);
    assert!(report["tokens_per_second"].as_f64().unwrap() > 0.0);

    // Extend the run by ten updates from its checkpoint.
    let (out, text) = run(
        train(&d, &["--device", "cpu", "--resume", path(&ckpt)]).args([
            "--steps",
            "40",
            "--sample-tokens",
            "0",
        ]),
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("from update 30"), "{text}");
    assert_eq!(checkpoint_step(&ckpt), 40);

    // A resumed run keeps its settings: other settings and a shorter run are refused.
    for (extra, want) in [
        (
            &["--accum", "2"][..],
            "--accum cannot be combined with --resume",
        ),
        (
            &["--steps", "5"][..],
            "--steps 5 is shorter than the checkpoint's run of 40",
        ),
    ] {
        let (out, text) = run(train(&d, &["--device", "cpu", "--resume", path(&ckpt)]).args(extra));
        assert!(!out.status.success(), "{extra:?}");
        assert!(text.contains(want), "{want:?} missing from {text}");
    }

    // A new run in the same directory keeps the old checkpoint beside it.
    let (out, text) = run(train(&d, &cpu).args(["--steps", "2", "--sample-tokens", "0"]));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("checkpoint.prev.bin"), "{text}");
    assert_eq!(checkpoint_step(&d.join("checkpoint.prev.bin")), 40);
    assert_eq!(checkpoint_step(&ckpt), 2);

    // Sample from it.
    let (out, text) = run(bin()
        .args([
            "sample", "--device", "cpu", "--tokens", "20", "--prompt", "One day",
        ])
        .args(["--checkpoint".as_ref(), ckpt.as_os_str()]));
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("One day"), "{text}");
}

/// Each process fits the model build (10 compiles) and one Baked recompile (10) in a budget
/// of 25, so it does two updates; three updates take two processes: the run re-executes
/// itself once and finishes.
#[test]
fn a_baked_run_restarts_itself_at_the_compile_budget() {
    let d = tmp("baked");
    let model = tiny(&d);
    let args = [
        "--device",
        "ane-sim",
        "--mode",
        "baked",
        "--model",
        path(&model),
    ];
    // Evaluating after every update also needs the new weights compiled: the run evaluates
    // where the budget allows and skips it where it does not, instead of failing.
    let (out, text) = run(train(&d, &args).env("ANE_MAX_COMPILES", "25").args([
        "--steps",
        "3",
        "--sample-tokens",
        "0",
        "--eval-every",
        "1",
    ]));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("held-out"), "{text}");
    assert_eq!(
        text.matches("checkpointed at update 2").count(),
        1,
        "{text}"
    );
    assert!(text.contains("restart 1 of this run"), "{text}");
    assert!(text.contains("efficiency"), "{text}");
    assert_eq!(checkpoint_step(&d.join("checkpoint.bin")), 3);
}

#[test]
fn bad_input_is_refused_clearly() {
    let d = tmp("bad");
    let model = tiny(&d);
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec!["--mode".into(), "fast".into()],
            "--mode \"fast\": expected params, packed or baked",
        ),
        (
            vec!["--model".into(), "stories1b".into()],
            "unknown model preset `stories1b`",
        ),
        (
            vec!["--corpus".into(), d.join("nope.txt").into()],
            "reading corpus",
        ),
        (
            vec!["--resume".into(), model.clone().into()],
            "not a valid ane-train checkpoint",
        ),
        (
            vec![
                "--model".into(),
                model.clone().into(),
                "--seq-len".into(),
                "40".into(),
            ],
            "must be a multiple of 16",
        ),
        (
            vec!["--steps".into(), "0".into()],
            "--steps must be at least 1",
        ),
        (
            vec!["--batch".into(), "0".into()],
            "--batch must be at least 1",
        ),
        (
            vec![
                "--model".into(),
                model.clone().into(),
                "--prompt".into(),
                "x".repeat(40).into(),
            ],
            "the prompt is 40 bytes; this model sees at most 31",
        ),
    ];
    for (args, want) in cases {
        let (out, text) = run(train(&d, &["--device", "cpu"]).args(&args));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text.contains(want),
            "{args:?}: {want:?} missing from {text}"
        );
    }
    let short = d.join("short.txt");
    std::fs::write(&short, "Too short.").unwrap();
    let args = [
        "--device",
        "cpu",
        "--corpus",
        path(&short),
        "--model",
        path(&model),
    ];
    let (out, text) = run(&mut train(&d, &args));
    assert!(!out.status.success());
    assert!(text.contains("fewer than one window"), "{text}");
}

/// `--batch 2` trains two windows per pass on the cpu device, checkpoints the setting and
/// resumes with it; the Neural Engine kernel set (ane-sim) refuses it before any work.
#[test]
fn batch_runs_windows_side_by_side_and_resumes() {
    let d = tmp("batch");
    let model = tiny(&d);
    let args = [
        "--device",
        "cpu",
        "--model",
        path(&model),
        "--batch",
        "2",
        "--steps",
        "2",
        "--sample-tokens",
        "0",
    ];
    let (out, text) = run(&mut train(&d, &args));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 updates of 1 x 2 x 32 tokens"), "{text}");
    let ckpt = d.join("checkpoint.bin");
    let header = ane_train::checkpoint::read(&ckpt).unwrap().header;
    assert_eq!((header.step, header.settings.batch), (2, 2));
    let resume = [
        "--resume",
        path(&ckpt),
        "--steps",
        "3",
        "--sample-tokens",
        "0",
    ];
    let (out, text) = run(&mut train(&d, &resume));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 updates of 1 x 2 x 32 tokens"), "{text}");
    assert_eq!(checkpoint_step(&ckpt), 3);
    let sim = tmp("batch-sim");
    let mut args = args.to_vec();
    args[1] = "ane-sim";
    let (out, text) = run(&mut train(&sim, &args));
    assert!(!out.status.success());
    assert!(text.contains("needs the cpu kernel set"), "{text}");
}

/// `ane-train corpus` writes exactly the built-in corpus the trainer uses.
#[test]
fn corpus_writes_the_builtin_text() {
    let d = tmp("corpus");
    let path = d.join("c.txt");
    let (out, text) = run(bin().args(["corpus", "--out"]).arg(&path));
    assert!(out.status.success(), "{text}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        ane_train::data::corpus::builtin()
    );
    let (out, _) = run(bin().args(["corpus", "--stories", "3", "--seed", "7"]));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ane_train::data::corpus::generate(7, 3)
    );
}

/// Ctrl-C between updates writes a checkpoint and exits with 130; the run resumes from it.
#[cfg(unix)]
#[test]
fn interrupt_checkpoints_and_exits() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let d = tmp("interrupt");
    let model = tiny(&d);
    let mut child = train(&d, &["--device", "cpu", "--model", path(&model)])
        .args(["--steps", "1000000", "--checkpoint-every", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first update's line means the loop (and the handler) is running.
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
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted: checkpointed at update")),
        "{rest:?}"
    );
    let step = checkpoint_step(&d.join("checkpoint.bin"));
    assert!(step >= 1);
}
