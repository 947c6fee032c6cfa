//! Builds `tests/c/test_bridge.c` with the system C compiler (`$CC`, else `cc`) against the
//! header and both libraries cargo built for this test run (`libane_bridge.so`/`.dylib` and
//! `libane_bridge.a`), and runs it on `cpu` and `ane-sim`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cargo put the libraries built for this test run: beside this test binary, in
/// `target/<profile>/deps/` (`cargo build` uplifts copies to `target/<profile>/`, which may be
/// stale during `cargo test`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe
        .parent()
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    assert!(
        deps.join("libane_bridge.a").exists(),
        "no libane_bridge.a in {}",
        deps.display()
    );
    deps
}

fn compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// System libraries a Rust static library needs (what `--print native-static-libs` lists).
fn native_libs() -> &'static [&'static str] {
    if cfg!(target_os = "macos") {
        &["-lSystem", "-lc", "-lm"]
    } else {
        &["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-lc"]
    }
}

/// Compiles the C test, linked dynamically or statically; returns the executable.
fn build(static_link: bool) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let libs = lib_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(if static_link {
        "test_bridge_static"
    } else {
        "test_bridge_dynamic"
    });
    let mut cmd = Command::new(compiler());
    cmd.args(["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/test_bridge.c"))
        .arg("-o")
        .arg(&out);
    if static_link {
        cmd.arg(libs.join("libane_bridge.a")).args(native_libs());
    } else {
        cmd.arg("-L")
            .arg(&libs)
            .arg("-lane_bridge")
            .arg(format!("-Wl,-rpath,{}", libs.display()));
    }
    cmd.arg("-lm");
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler `{}`: {e}", compiler()));
    assert!(
        res.status.success(),
        "C compile failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// Runs the C test with `args` and `env`; asserts it passed at least `min_checks` checks.
fn run(exe: &Path, args: &[&str], env: Option<&str>, min_checks: usize) {
    let mut cmd = Command::new(exe);
    // cargo test puts target/<profile> (with a possibly stale uplifted library) on the loader
    // path; the binary's rpath names the library built for this run.
    cmd.args(args)
        .env_remove("ANE_BRIDGE_DEVICE")
        .env_remove("ANE_MAX_COMPILES")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("DYLD_LIBRARY_PATH")
        .env_remove("DYLD_FALLBACK_LIBRARY_PATH");
    if let Some(v) = env {
        cmd.env("ANE_BRIDGE_DEVICE", v);
    }
    let res = cmd.output().expect("running the C test");
    let stdout = String::from_utf8_lossy(&res.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&res.stderr));
    assert!(res.status.success(), "C test {args:?} failed:\n{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(
        !stdout.contains("FAIL ") && passed >= min_checks,
        "{passed} checks passed, expected at least {min_checks}"
    );
}

/// Every check of the program's main mode (count of `check(` calls outside bad-env).
const CHECKS: usize = 100;

#[test]
fn c_program_on_cpu_dynamic() {
    run(&build(false), &["cpu"], None, CHECKS);
}

#[test]
fn c_program_on_ane_sim_dynamic() {
    run(&build(false), &["ane-sim"], None, CHECKS);
}

#[test]
fn c_program_on_both_devices_static() {
    let exe = build(true);
    run(&exe, &["ane-sim"], None, CHECKS);
    run(&exe, &["cpu", "env"], Some("cpu"), CHECKS);
}

#[test]
fn c_program_reports_a_bad_device_variable() {
    run(&build(false), &["bad-env"], Some("bogus"), 4);
}
