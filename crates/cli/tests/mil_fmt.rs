//! `ane-train mil fmt`: canonical output, `--check`, and exit status 2 with FILE:LINE:COL.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ane-train"))
}

fn golden(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mil/tests/golden")
        .join(name)
}

#[test]
fn fmt_prints_the_canonical_form() {
    let path = golden("rmsnorm.mil");
    let out = bin().args(["mil", "fmt"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(&path).unwrap()
    );
}

#[test]
fn fmt_canonicalises_hand_written_text() {
    let dir = std::env::temp_dir().join(format!("ane-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.mil");
    std::fs::write(
        &path,
        "program(1.3)\n{ func main<ios18>(tensor<fp16, [1,4,1,64]> x) {\n fp16 h = const()[name = string(\"h\"), val = fp16(0x1p-3)];\n tensor<fp16, [1, 4, 1, 64]> y = mul(x = x, y = h)[name = string(\"y\")]; } -> (y); }",
    )
    .unwrap();
    let out = bin().args(["mil", "fmt"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("        fp16 h = const()[name=string(\"h\"), val=fp16(0.125)];\n"),
        "{text}"
    );
    assert!(
        text.contains("tensor<fp16, [1,4,1,64]> y = mul(x=x,y=h)[name=string(\"y\")];"),
        "{text}"
    );
    let check = bin()
        .args(["mil", "fmt", "--check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(check.status.success());
    assert!(check.stdout.is_empty());
}

#[test]
fn bad_input_exits_2_with_file_line_col() {
    let dir = std::env::temp_dir().join(format!("ane-fmt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.mil");
    std::fs::write(
        &path,
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = mul(x=x,y=zz)[name=string(\"y\")];\n    } -> (y);\n}\n",
    )
    .unwrap();
    for check in [false, true] {
        let mut cmd = bin();
        cmd.args(["mil", "fmt"]);
        if check {
            cmd.arg("--check");
        }
        let out = cmd.arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            format!("{}:4:48: unknown variable `zz`\n", path.display())
        );
        assert!(out.stdout.is_empty());
    }
    let missing = bin()
        .args(["mil", "fmt", "/nonexistent/k.mil"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8(missing.stderr)
        .unwrap()
        .starts_with("/nonexistent/k.mil: cannot read:"));
}

#[test]
fn demo_runs_and_verifies_its_kernel() {
    let dir = std::env::temp_dir().join(format!("ane-demo-{}", std::process::id()));
    let out = bin()
        .args(["demo", "--dim", "64", "--seq", "32", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("program(1.3)\n"));
    assert!(text.contains("both read back and verified"));
    assert!(dir.join("weights/rms.bin").exists());
}
