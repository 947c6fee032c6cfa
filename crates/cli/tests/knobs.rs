//! Issue 12 end to end: `ANE_ACCUM_STEPS` / `ANE_MAX_COMPILES` validation, `--metrics` across
//! restarts and a resume, `plot` and `train --plot`, and the three benches on a tiny model.

use std::path::Path;
use std::process::Command;

mod common;
use common::{bin, run, tiny, tmp};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The metrics file's lines as JSON values.
fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn steps_of(lines: &[serde_json::Value], kind: &str) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| l["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn bad_environment_values_are_refused_before_any_file_is_written() {
    let d = tmp("env");
    let model = tiny(&d);
    let cases = [
        ("ANE_ACCUM_STEPS", "0", "from 1 to 10000"),
        ("ANE_ACCUM_STEPS", "-3", "from 1 to 10000"),
        ("ANE_ACCUM_STEPS", "abc", "from 1 to 10000"),
        ("ANE_ACCUM_STEPS", "1e9", "from 1 to 10000"),
        ("ANE_ACCUM_STEPS", "", "from 1 to 10000"),
        ("ANE_ACCUM_STEPS", " ", "from 1 to 10000"),
        ("ANE_ACCUM_STEPS", "1000000000", "from 1 to 10000"),
        ("ANE_MAX_COMPILES", "0", "up to 100000"),
        ("ANE_MAX_COMPILES", "-1", "up to 100000"),
        ("ANE_MAX_COMPILES", "abc", "up to 100000"),
        ("ANE_MAX_COMPILES", "", "up to 100000"),
        ("ANE_MAX_COMPILES", "1e9", "up to 100000"),
    ];
    for (i, (var, value, range)) in cases.iter().enumerate() {
        let out = d.join(format!("run{i}"));
        let metrics = d.join(format!("m{i}.jsonl"));
        let (o, text) = run(bin()
            .args(["train", "--device", "cpu", "--steps", "1", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .arg("--metrics")
            .arg(&metrics)
            .env(var, value));
        assert!(!o.status.success(), "{var}={value:?} was accepted");
        assert!(
            text.contains(var) && text.contains(range),
            "{var}={value:?}: {text}"
        );
        assert!(
            !out.exists() && !metrics.exists(),
            "{var}={value:?} wrote files"
        );
    }
    let (o, text) = run(bin()
        .args(["train", "--device", "cpu", "--accum", "20000", "--out"])
        .arg(d.join("flag")));
    assert!(!o.status.success());
    assert!(
        text.contains("--accum") && text.contains("from 1 to 10000"),
        "{text}"
    );
    assert!(!d.join("flag").exists());
}

#[test]
fn accumulation_comes_from_the_environment_unless_the_flag_is_given() {
    let d = tmp("accum");
    let model = tiny(&d);
    for (flag, want) in [(None, 3), (Some("2"), 2)] {
        let out = d.join(format!("run{want}"));
        let mut cmd = bin();
        cmd.args([
            "train",
            "--device",
            "cpu",
            "--steps",
            "2",
            "--sample-tokens",
            "0",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .env("ANE_ACCUM_STEPS", "3");
        if let Some(f) = flag {
            cmd.args(["--accum", f]);
        }
        let (o, text) = run(&mut cmd);
        assert!(o.status.success(), "{text}");
        let ckpt = ane_train::checkpoint::read(&out.join("checkpoint.bin")).unwrap();
        assert_eq!(ckpt.header.settings.accum, want, "{text}");
    }
}

#[test]
fn metrics_are_appended_across_restarts_and_a_resume_without_duplicates_and_plotted() {
    let d = tmp("metrics");
    let model = tiny(&d);
    let m = d.join("m.jsonl");
    let base = |cmd: &mut Command| {
        cmd.args([
            "train",
            "--device",
            "ane-sim",
            "--mode",
            "baked",
            "--sample-tokens",
            "0",
        ])
        .args(["--eval-every", "1", "--out"])
        .arg(&d)
        .arg("--metrics")
        .arg(&m);
    };
    // 25 compiles: every process does two updates, then checkpoints and exec()s itself.
    let mut first = bin();
    base(&mut first);
    first
        .args(["--steps", "3", "--model"])
        .arg(&model)
        .env("ANE_MAX_COMPILES", "25");
    let (o, text) = run(&mut first);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("restart 1 of this run"), "{text}");
    let l = lines(&m);
    assert_eq!(steps_of(&l, "update"), [1, 2, 3], "{l:?}");
    assert_eq!(steps_of(&l, "start"), [0, 2]);
    let evals = steps_of(&l, "eval");
    assert!(evals.contains(&3), "{evals:?}");
    for u in l.iter().filter(|l| l["kind"] == "update") {
        for key in [
            "loss",
            "lr",
            "grad_norm",
            "ms",
            "tokens_per_s",
            "skipped",
            "loss_scale",
        ] {
            assert!(!u[key].is_null(), "{key} missing from {u}");
        }
        assert_eq!(
            u["tokens"].as_u64().unwrap(),
            u["step"].as_u64().unwrap() * 32
        );
    }
    // What a crash after the checkpoint leaves: an update past it, and a torn line.
    let mut text_now = std::fs::read_to_string(&m).unwrap();
    text_now += "{\"kind\":\"update\",\"step\":4,\"tokens\":128,\"loss\":1.0,\"lr\":0.001,\
                 \"grad_norm\":1.0,\"ms\":1.0,\"tokens_per_s\":1.0,\"skipped\":false,\
                 \"loss_scale\":1.0,\"weight_update_ms\":0.0}\n{\"kind\":\"upd";
    std::fs::write(&m, text_now).unwrap();
    let mut resume = bin();
    base(&mut resume);
    resume
        .args(["--steps", "5", "--plot", "--resume"])
        .arg(d.join("checkpoint.bin"))
        .env("ANE_MAX_COMPILES", "100");
    let (o, text) = run(&mut resume);
    assert!(o.status.success(), "{text}");
    let l = lines(&m);
    assert_eq!(steps_of(&l, "update"), [1, 2, 3, 4, 5], "{l:?}");
    let evals = steps_of(&l, "eval");
    let mut unique = evals.clone();
    unique.dedup();
    assert_eq!(evals, unique, "duplicate evaluations");
    let loss4 = l
        .iter()
        .find(|l| l["kind"] == "update" && l["step"] == 4)
        .unwrap();
    assert_ne!(
        loss4["loss"].as_f64().unwrap(),
        1.0,
        "the stale line survived"
    );
    check_png(&d.join("loss.png"));
    let png = d.join("again.png");
    let (o, text) = run(bin()
        .args(["plot", "--metrics"])
        .arg(&m)
        .arg("--out")
        .arg(&png));
    assert!(o.status.success(), "{text}");
    check_png(&png);
    let (o, text) = run(bin().args(["plot", "--metrics"]).arg(d.join("none.jsonl")));
    assert!(!o.status.success());
    assert!(text.contains("none.jsonl"), "{text}");
}

/// A PNG signature and a 960×600 IHDR.
fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 960);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 600);
    assert!(bytes.len() > 2000, "an empty-looking plot");
}

fn bench(d: &Path, args: &[&str]) -> serde_json::Value {
    let j = d.join(format!("{}.json", args[0]));
    let (o, text) = run(bin().arg("bench").args(args).arg("--json").arg(&j));
    assert!(o.status.success(), "{text}");
    for want in [
        "machine:",
        "cores",
        "repeat (on a Mac): ane-train bench",
        "| --- |",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }
    json(&j)
}

#[test]
fn bench_weight_modes_measures_every_mode_on_every_device_that_opens() {
    let d = tmp("modes");
    let model = tiny(&d);
    let m = model.to_str().unwrap();
    let j = bench(
        &d,
        &[
            "weight-modes",
            "--model",
            m,
            "--steps",
            "3",
            "--max-compiles",
            "20",
        ],
    );
    let rows = j["rows"].as_array().unwrap();
    let on_linux = !cfg!(target_os = "macos");
    assert!(rows.len() >= 6, "{j}");
    if on_linux {
        assert_eq!(j["unavailable"][0]["device"], "ane", "{j}");
    }
    for r in rows {
        assert_eq!(r["updates"], 3, "{r}");
        for key in [
            "ms_per_update",
            "compile_ms_per_update",
            "staging_ms_per_update",
        ] {
            assert!(r[key]["median"].as_f64().unwrap() >= 0.0, "{key}: {r}");
        }
        let compiles = r["compiles_per_update"]["max"].as_f64().unwrap();
        assert_eq!(compiles > 0.0, r["mode"] == "baked", "{r}");
        assert!(
            r["evals_per_update"]["median"].as_f64().unwrap() >= 1.0,
            "{r}"
        );
    }
    // 20 compiles and 10 per Baked update on ane-sim: the run restarts.
    let sim_baked = rows
        .iter()
        .find(|r| r["device"] == "ane-sim" && r["mode"] == "baked")
        .unwrap();
    assert!(sim_baked["restarts"].as_u64().unwrap() >= 1, "{sim_baked}");
}

#[test]
fn bench_accum_runs_real_restarts_per_accumulation() {
    let d = tmp("accum-bench");
    let model = tiny(&d);
    let m = model.to_str().unwrap();
    let j = bench(
        &d,
        &[
            "accum",
            "--model",
            m,
            "--accum",
            "1,4",
            "--micro-steps",
            "4",
            "--max-compiles",
            "20",
        ],
    );
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{j}");
    assert_eq!(
        (rows[0]["accum"].as_u64(), rows[0]["updates"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(
        (rows[1]["accum"].as_u64(), rows[1]["updates"].as_u64()),
        (Some(4), Some(1))
    );
    assert!(rows[0]["restarts"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(rows[1]["restarts"], 0, "{j}");
    for r in rows {
        assert!(r["wall_s"].as_f64().unwrap() > 0.0);
        assert_eq!(r["tokens"], 4 * 32);
        assert!(r["eval_loss"].as_f64().unwrap().is_finite());
    }
    let (o, text) = run(bin().args(["bench", "accum", "--accum", "3", "--micro-steps", "4"]));
    assert!(!o.status.success());
    assert!(
        text.contains("not a positive multiple of accumulation 3"),
        "{text}"
    );
}

#[test]
fn bench_pool_counts_surfaces_with_the_pool_on_and_off() {
    let d = tmp("pool");
    let model = tiny(&d);
    let j = bench(
        &d,
        &["pool", "--model", model.to_str().unwrap(), "--cycles", "2"],
    );
    let rows = j["rows"].as_array().unwrap();
    let (on, off) = (&rows[0], &rows[1]);
    assert_eq!(
        (on["pool"].as_str(), off["pool"].as_str()),
        (Some("on"), Some("off"))
    );
    assert_eq!(off["pool_hits"], 0);
    assert!(on["pool_hits"].as_u64().unwrap() > 0, "{j}");
    assert!(
        on["surfaces_created"].as_u64() < off["surfaces_created"].as_u64(),
        "{j}"
    );
    assert!(on["ms_per_cycle"]["median"].as_f64().unwrap() > 0.0);
}
