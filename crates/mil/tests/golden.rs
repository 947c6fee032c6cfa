//! Golden MIL text: each sample program is printed and compared with a checked-in file, then
//! parsed back and compared with the original Program.
//!
//! After an intended change to emitted MIL, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p ane-mil --test golden` and review the diff.

use std::path::PathBuf;

use ane_mil::ir::{Dialect, Program};
use ane_mil::{parse, print, samples};

fn check(name: &str, program: Program) {
    let text = print(&program);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.mil"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\n---> HINT: run `UPDATE_GOLDEN=1 cargo test -p ane-mil --test golden`",
            path.display()
        )
    });
    assert_eq!(text, want, "{name}: printed MIL differs from {}\n---> HINT: if intended, run `UPDATE_GOLDEN=1 cargo test -p ane-mil --test golden` and review the diff", path.display());
    let back = parse(&want).unwrap_or_else(|e| panic!("{name}: golden text does not parse: {e}"));
    assert_eq!(back, program, "{name}: parse(print(p)) != p");
    assert_eq!(print(&back), want, "{name}: print(parse(text)) != text");
}

#[test]
fn dynamic_matmul_packed() {
    check(
        "dynamic_matmul_packed",
        samples::dynamic_matmul_packed(64, 32, 48).unwrap(),
    );
}

#[test]
fn dynamic_matmul_params_ios18() {
    check(
        "dynamic_matmul_params_ios18",
        samples::dynamic_matmul_params(Dialect::Ios18, 64, 32, 48).unwrap(),
    );
}

#[test]
fn dynamic_matmul_params_ios16() {
    check(
        "dynamic_matmul_params_ios16",
        samples::dynamic_matmul_params(Dialect::Ios16, 64, 32, 48).unwrap(),
    );
}

#[test]
fn rmsnorm() {
    check("rmsnorm", samples::rmsnorm(64, 32).unwrap());
}

#[test]
fn causal_attention() {
    check(
        "causal_attention",
        samples::causal_attention(4, 16, 32).unwrap(),
    );
}
