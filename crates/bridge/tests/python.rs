//! Runs the Python package's pytest suite (`python/tests`) and the training example against the
//! shared library cargo built for this test run, so `cargo test` covers the Python layer too.
//!
//! Skipped, with the reason printed, when `python3` or pytest is missing — unless
//! `ANE_BRIDGE_REQUIRE_PYTHON=1` (as `.ci/run` sets), which makes that a failure. pytest's exit
//! code 5 (no tests collected) is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let name = if cfg!(target_os = "macos") {
        "libane_bridge.dylib"
    } else {
        "libane_bridge.so"
    };
    let lib = exe.parent().expect("deps dir").join(name);
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether python3 with pytest is available; prints why not.
fn available() -> bool {
    let required = std::env::var("ANE_BRIDGE_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let ok = Command::new(python())
        .args(["-c", "import pytest"])
        .output()
        .map(|o| o.status.success());
    match ok {
        Ok(true) => true,
        other => {
            let why = match other {
                Ok(_) => "pytest is not installed (python3 -m pip install pytest)".to_string(),
                Err(e) => format!("`{}` cannot be run: {e}", python()),
            };
            assert!(!required, "ANE_BRIDGE_REQUIRE_PYTHON=1 but {why}");
            println!("SKIPPED: the Python tests need python3 and pytest: {why}");
            false
        }
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(python())
        .args(args)
        .current_dir(repo())
        .env("ANE_BRIDGE_LIB", library())
        .env_remove("ANE_BRIDGE_DEVICE")
        .env_remove("ANE_MAX_COMPILES")
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "python3 {args:?} exited with {:?} (pytest: 5 = no tests collected)",
        out.status.code()
    );
    stdout
}

#[test]
fn pytest_suite_passes() {
    if !available() {
        return;
    }
    let out = run(&[
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "python/tests",
    ]);
    assert!(out.contains(" passed"), "pytest ran no tests:\n{out}");
}

#[test]
fn train_linear_example_lowers_the_loss() {
    if !available() {
        return;
    }
    let out = run(&[
        "python/examples/train_linear.py",
        "--device",
        "ane-sim",
        "--steps",
        "40",
    ]);
    assert!(out.contains("with 1 compile(s)"), "{out}");
}
