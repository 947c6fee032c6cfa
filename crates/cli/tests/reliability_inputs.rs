//! The bad-input catalogue (issue 13): every case hands `ane-train` one bad flag, environment
//! variable or file and checks that it exits non-zero, with a message naming the problem, without
//! a panic, and without changing any file that existed before it ran.
//!
//! All cases run in one fixture directory built once: a valid checkpoint from a 2-step tiny run
//! and corrupted copies of it, model TOML files, corpora, token files, tokenizers, MIL text and
//! `.npy` inputs. Every file in it is hashed before and after each case.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// One bad input: the arguments, extra environment, and a substring stderr must contain.
struct Case {
    /// A short name for failure messages.
    name: &'static str,
    /// Arguments to `ane-train` (paths relative to the fixture directory).
    args: &'static [&'static str],
    /// Environment variables set for this case.
    env: &'static [(&'static str, &'static str)],
    /// A substring of stderr that names the problem.
    expect: &'static str,
}

const fn case(name: &'static str, args: &'static [&'static str], expect: &'static str) -> Case {
    Case {
        name,
        args,
        env: &[],
        expect,
    }
}

const fn env_case(
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    expect: &'static str,
) -> Case {
    Case {
        name,
        args,
        env,
        expect,
    }
}

const TRAIN: &[&str] = &[
    "train", "--steps", "2", "--device", "cpu", "--out", "envrun",
];

const CASES: &[Case] = &[
    // --- CLI flags ---
    case(
        "sample huge --tokens",
        &[
            "sample",
            "--checkpoint",
            "good.ckpt",
            "--device",
            "cpu",
            "--tokens",
            "99999999999",
        ],
        "--tokens",
    ),
    case(
        "sample NaN temperature",
        &[
            "sample",
            "--checkpoint",
            "good.ckpt",
            "--device",
            "cpu",
            "--temperature",
            "NaN",
        ],
        "--temperature must be a finite number",
    ),
    case(
        "sample inf temperature",
        &[
            "sample",
            "--checkpoint",
            "good.ckpt",
            "--device",
            "cpu",
            "--temperature",
            "inf",
        ],
        "--temperature must be a finite number",
    ),
    case(
        "sample unknown device",
        &["sample", "--checkpoint", "good.ckpt", "--device", "bogus"],
        "device=\"bogus\"",
    ),
    case(
        "bench runtime zero latency evals",
        &["bench", "runtime", "--latency-evals", "0"],
        "--latency-evals",
    ),
    case(
        "train zero steps",
        &["train", "--steps", "0", "--device", "cpu", "--out", "o"],
        "--steps must be at least 1",
    ),
    case(
        "train zero seq-len",
        &[
            "train",
            "--steps",
            "2",
            "--seq-len",
            "0",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "`seq_len` must be > 0",
    ),
    case(
        "train huge seq-len",
        &[
            "train",
            "--steps",
            "2",
            "--seq-len",
            "99999999",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "must be a multiple of 16",
    ),
    case(
        "train zero batch",
        &[
            "train", "--steps", "2", "--batch", "0", "--device", "cpu", "--out", "o",
        ],
        "--batch must be at least 1",
    ),
    case(
        "train zero accum",
        &[
            "train", "--steps", "2", "--accum", "0", "--device", "cpu", "--out", "o",
        ],
        "--accum=\"0\"",
    ),
    case(
        "train NaN lr",
        &[
            "train", "--steps", "2", "--lr", "NaN", "--device", "cpu", "--out", "o",
        ],
        "learning rate must be finite",
    ),
    case(
        "train inf lr",
        &[
            "train", "--steps", "2", "--lr", "inf", "--device", "cpu", "--out", "o",
        ],
        "learning rate must be finite",
    ),
    case(
        "train NaN grad clip",
        &[
            "train",
            "--steps",
            "2",
            "--grad-clip",
            "NaN",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "grad_clip must be finite",
    ),
    case(
        "train inf weight decay",
        &[
            "train",
            "--steps",
            "2",
            "--weight-decay",
            "inf",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "weight_decay must be finite",
    ),
    case(
        "train NaN min lr",
        &[
            "train", "--steps", "2", "--min-lr", "NaN", "--device", "cpu", "--out", "o",
        ],
        "final learning rate",
    ),
    case(
        "train zero max compiles",
        &[
            "train",
            "--steps",
            "2",
            "--max-compiles",
            "0",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "ANE_MAX_COMPILES",
    ),
    case(
        "train unknown preset",
        &["train", "--model", "nope", "--device", "cpu", "--out", "o"],
        "unknown model preset `nope`",
    ),
    case(
        "generate top-p out of range",
        &["generate", "--checkpoint", "good.ckpt", "--top-p", "5"],
        "--top-p must be in [0, 1]",
    ),
    case(
        "generate NaN top-p",
        &["generate", "--checkpoint", "good.ckpt", "--top-p", "NaN"],
        "--top-p must be in [0, 1]",
    ),
    case(
        "tokenizer train vocab too small",
        &[
            "tokenizer",
            "train",
            "--corpus",
            "corpus.txt",
            "--vocab",
            "0",
            "--out",
            "tk.bin",
        ],
        "vocabulary size 0",
    ),
    case(
        "tokenizer train vocab too big",
        &[
            "tokenizer",
            "train",
            "--corpus",
            "corpus.txt",
            "--vocab",
            "70000",
            "--out",
            "tk.bin",
        ],
        "vocabulary size 70000",
    ),
    case(
        "corpus huge --stories",
        &["corpus", "--stories", "99999999999", "--out", "c.txt"],
        "--stories",
    ),
    case(
        "bench pool zero cycles",
        &["bench", "pool", "--cycles", "0"],
        "--cycles must be at least 1",
    ),
    case(
        "bench accum zero micro steps",
        &["bench", "accum", "--micro-steps", "0"],
        "--micro-steps 0",
    ),
    // --- environment ---
    env_case(
        "ANE_MAX_COMPILES=0",
        &[("ANE_MAX_COMPILES", "0")],
        TRAIN,
        "ANE_MAX_COMPILES=\"0\"",
    ),
    env_case(
        "ANE_MAX_COMPILES=-1",
        &[("ANE_MAX_COMPILES", "-1")],
        TRAIN,
        "ANE_MAX_COMPILES=\"-1\"",
    ),
    env_case(
        "ANE_MAX_COMPILES empty",
        &[("ANE_MAX_COMPILES", "")],
        TRAIN,
        "ANE_MAX_COMPILES=\"\"",
    ),
    env_case(
        "ANE_MAX_COMPILES overflow",
        &[("ANE_MAX_COMPILES", "99999999999999999999")],
        TRAIN,
        "ANE_MAX_COMPILES=\"99999999999999999999\"",
    ),
    env_case(
        "ANE_ACCUM_STEPS=0",
        &[("ANE_ACCUM_STEPS", "0")],
        TRAIN,
        "ANE_ACCUM_STEPS=\"0\"",
    ),
    env_case(
        "ANE_ACCUM_STEPS=abc",
        &[("ANE_ACCUM_STEPS", "abc")],
        TRAIN,
        "ANE_ACCUM_STEPS=\"abc\"",
    ),
    env_case(
        "ANE_ACCUM_STEPS too big",
        &[("ANE_ACCUM_STEPS", "99999")],
        TRAIN,
        "ANE_ACCUM_STEPS=\"99999\"",
    ),
    env_case(
        "ANE_TRAIN_TEST_SLOW_WRITE_MS=abc",
        &[("ANE_TRAIN_TEST_SLOW_WRITE_MS", "abc")],
        TRAIN,
        "ANE_TRAIN_TEST_SLOW_WRITE_MS=\"abc\"",
    ),
    env_case(
        "ANE_TRAIN_TEST_FAIL_SAVE=0",
        &[("ANE_TRAIN_TEST_FAIL_SAVE", "0")],
        TRAIN,
        "ANE_TRAIN_TEST_FAIL_SAVE=\"0\"",
    ),
    // --- model TOML files ---
    case(
        "model TOML unknown table",
        &[
            "train",
            "--model",
            "unknown_key.toml",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "unknown field `model`",
    ),
    case(
        "model TOML missing name",
        &[
            "train",
            "--model",
            "no_name.toml",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "missing field `name`",
    ),
    case(
        "model TOML zero dim",
        &[
            "train",
            "--model",
            "zero_dim.toml",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "`dim` must be > 0",
    ),
    case(
        "model TOML missing file",
        &[
            "train",
            "--model",
            "missing.toml",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "missing.toml",
    ),
    // --- corpora and token files ---
    case(
        "corpus missing",
        &[
            "train", "--corpus", "nope.txt", "--device", "cpu", "--out", "o",
        ],
        "reading corpus nope.txt",
    ),
    case(
        "corpus empty",
        &[
            "train",
            "--corpus",
            "empty.bin",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "the train data has 0 tokens",
    ),
    case(
        "corpus non-UTF-8 and too short",
        &[
            "train",
            "--corpus",
            "nonutf8.txt",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "fewer than one window",
    ),
    case(
        "token file without tokenizer",
        &[
            "train",
            "--data",
            "tokens_odd.bin",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "--data needs --tokenizer",
    ),
    case(
        "tokenize corpus is a directory",
        &[
            "tokenize",
            "--tokenizer",
            "bytes",
            "--corpus",
            "adir",
            "--out",
            "t.bin",
        ],
        "reading corpus adir",
    ),
    // --- checkpoints ---
    case(
        "checkpoint truncated",
        &["sample", "--checkpoint", "trunc.ckpt", "--device", "cpu"],
        "the file has 1000 bytes",
    ),
    case(
        "checkpoint empty",
        &["sample", "--checkpoint", "empty.bin", "--device", "cpu"],
        "0 bytes is too short",
    ),
    case(
        "checkpoint wrong magic",
        &["sample", "--checkpoint", "magic.ckpt", "--device", "cpu"],
        "wrong magic",
    ),
    case(
        "checkpoint wrong version",
        &["sample", "--checkpoint", "version.ckpt", "--device", "cpu"],
        "format version 9",
    ),
    case(
        "checkpoint bad checksum",
        &["sample", "--checkpoint", "checksum.ckpt", "--device", "cpu"],
        "SHA-256 mismatch",
    ),
    case(
        "checkpoint huge header length",
        &[
            "sample",
            "--checkpoint",
            "header_len.ckpt",
            "--device",
            "cpu",
        ],
        "header length",
    ),
    case(
        "checkpoint header not JSON",
        &[
            "sample",
            "--checkpoint",
            "header_json.ckpt",
            "--device",
            "cpu",
        ],
        "header:",
    ),
    case(
        "checkpoint is a directory",
        &["sample", "--checkpoint", "adir", "--device", "cpu"],
        "Is a directory",
    ),
    case(
        "resume truncated checkpoint",
        &[
            "train",
            "--resume",
            "trunc.ckpt",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "reading checkpoint trunc.ckpt",
    ),
    case(
        "resume with a different model",
        &[
            "train",
            "--resume",
            "good.ckpt",
            "--model",
            "stories260k",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "--model cannot be combined with --resume",
    ),
    case(
        "resume with a different seq-len",
        &[
            "train",
            "--resume",
            "good.ckpt",
            "--seq-len",
            "64",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "--seq-len cannot be combined with --resume",
    ),
    case(
        "resume with fewer steps",
        &[
            "train",
            "--resume",
            "good.ckpt",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "shorter than the checkpoint's run",
    ),
    case(
        "export truncated checkpoint",
        &[
            "export",
            "--checkpoint",
            "trunc.ckpt",
            "--format",
            "llama2c",
            "--out",
            "x.bin",
        ],
        "not a valid ane-train checkpoint",
    ),
    // --- model files ---
    case(
        "init llama2c empty",
        &[
            "train",
            "--init",
            "empty.bin",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "truncated",
    ),
    case(
        "init safetensors dir without config",
        &["train", "--init", "adir", "--device", "cpu", "--out", "o"],
        "adir/config.json",
    ),
    case(
        "generate llama2c model empty",
        &[
            "generate",
            "--model-file",
            "empty.bin",
            "--tokenizer",
            "tokenizer_empty.bin",
        ],
        "truncated",
    ),
    // --- tokenizer files ---
    case(
        "tokenizer empty",
        &[
            "train",
            "--tokenizer",
            "tokenizer_empty.bin",
            "--device",
            "cpu",
            "--out",
            "o",
        ],
        "reading tokenizer tokenizer_empty.bin",
    ),
    case(
        "tokenize with empty tokenizer",
        &[
            "tokenize",
            "--tokenizer",
            "tokenizer_empty.bin",
            "--corpus",
            "corpus.txt",
            "--out",
            "t.bin",
        ],
        "max_token_length",
    ),
    // --- MIL text ---
    case(
        "mil fmt unterminated",
        &["mil", "fmt", "bad.mil"],
        "bad.mil:2:1",
    ),
    case(
        "mil fmt non-UTF-8",
        &["mil", "fmt", "nonutf8.mil"],
        "valid UTF-8",
    ),
    case(
        "mil fmt empty",
        &["mil", "fmt", "empty.bin"],
        "expected `program`",
    ),
    case(
        "mil fmt missing",
        &["mil", "fmt", "nope.mil"],
        "nope.mil: cannot read",
    ),
    // --- .npy inputs of `mil run` ---
    case(
        "npy wrong shape",
        &[
            "mil",
            "run",
            "demo/model.mil",
            "--input",
            "x=shape.npy",
            "--out",
            "mo",
        ],
        "does not match the declared",
    ),
    case(
        "npy unsupported dtype",
        &[
            "mil",
            "run",
            "demo/model.mil",
            "--input",
            "x=dtype.npy",
            "--out",
            "mo",
        ],
        "dtype <i8 is not supported",
    ),
    case(
        "npy not an npy",
        &[
            "mil",
            "run",
            "demo/model.mil",
            "--input",
            "x=empty.bin",
            "--out",
            "mo",
        ],
        "not a valid .npy file",
    ),
    case(
        "npy input name unknown",
        &[
            "mil",
            "run",
            "demo/model.mil",
            "--input",
            "y=shape.npy",
            "--out",
            "mo",
        ],
        "no input `y`",
    ),
    case(
        "npy input missing",
        &["mil", "run", "demo/model.mil", "--out", "mo"],
        "input `x`",
    ),
    case(
        "npy data short",
        &[
            "mil",
            "run",
            "demo/model.mil",
            "--input",
            "x=short.npy",
            "--out",
            "mo",
        ],
        "short.npy",
    ),
];

/// Hashes of every file under `dir` (recursively), by path.
fn hashes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut h = DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                out.insert(p, h.finish());
            }
        }
    }
    out
}

/// A `.npy` file of `descr` and `shape` with `data_bytes` zero bytes of data.
fn npy(descr: &str, shape: &str, data_bytes: usize) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_bytes));
    v
}

/// Builds the fixture directory: a valid checkpoint, corrupted copies, and the other bad files.
fn fixture() -> PathBuf {
    let d = common::tmp("reliability-inputs");
    let w = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    let out = common::bin()
        .current_dir(&d)
        .args([
            "train",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--out",
            "run",
            "--sample-tokens",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = std::fs::read(d.join("run/checkpoint.bin")).unwrap();
    w("good.ckpt", &good);
    w("trunc.ckpt", &good[..1000]);
    let mut m = good.clone();
    m[..8].copy_from_slice(b"XXXXXXXX");
    w("magic.ckpt", &m);
    let mut v = good.clone();
    v[8..12].copy_from_slice(&9u32.to_le_bytes());
    w("version.ckpt", &v);
    let mut c = good.clone();
    let n = c.len();
    c[n - 100] ^= 1;
    w("checksum.ckpt", &c);
    let mut hl = good.clone();
    hl[12..20].copy_from_slice(&(1u64 << 40).to_le_bytes());
    w("header_len.ckpt", &hl);
    let mut hj = good.clone();
    hj[20] = b'!';
    w("header_json.ckpt", &hj);
    w("empty.bin", b"");
    w("tokenizer_empty.bin", b"");
    w("nonutf8.txt", b"\xff\xfe\x80");
    w("tokens_odd.bin", &good[..301]);
    w(
        "corpus.txt",
        b"Once upon a time there was a cat.\n\nThe end.\n",
    );
    w("unknown_key.toml", b"[model]\ndim = \"x\"\n");
    w("no_name.toml", b"dim = 0\n");
    w(
        "zero_dim.toml",
        b"name=\"z\"\ndim=0\nn_layers=1\nn_heads=1\nn_kv_heads=1\nhidden_dim=1\nvocab_size=1\nseq_len=16\n",
    );
    w(
        "bad.mil",
        b"program(1.3)\nfunc main<ios18>(tensor<fp16, [1, 4, 1, 4]> x) {\n",
    );
    w("nonutf8.mil", b"garbage \xff\xfe");
    w("shape.npy", &npy("<f2", "(1, 16, 1, 8)", 256));
    w("short.npy", &npy("<f2", "(1, 16, 1, 16)", 10));
    w("dtype.npy", &npy("<i8", "(1, 16, 1, 16)", 2048));
    std::fs::create_dir_all(d.join("adir")).unwrap();
    let out = common::bin()
        .current_dir(&d)
        .args(["demo", "--out", "demo", "--dim", "16", "--seq", "16"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

#[test]
fn bad_inputs_fail_cleanly_and_touch_nothing() {
    assert!(CASES.len() >= 40, "the catalogue has {} cases", CASES.len());
    let d = fixture();
    let mut failures = Vec::new();
    for c in CASES {
        let before = hashes(&d);
        let mut cmd = common::bin();
        cmd.current_dir(&d).args(c.args).env("RUST_BACKTRACE", "0");
        for (k, v) in c.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let after = hashes(&d);
        let changed: Vec<_> = before
            .iter()
            .filter(|(p, h)| after.get(*p) != Some(h))
            .map(|(p, _)| p.display().to_string())
            .collect();
        let mut why = Vec::new();
        match out.status.code() {
            None => why.push("killed by a signal".to_string()),
            Some(0) => why.push("exit status 0".to_string()),
            Some(101) => why.push("exit status 101 (panic)".to_string()),
            Some(_) => {}
        }
        if stderr.contains("panicked at") || stderr.contains("RUST_BACKTRACE") {
            why.push("panic text in stderr".to_string());
        }
        if !stderr.contains(c.expect) {
            why.push(format!("stderr lacks {:?}", c.expect));
        }
        if !changed.is_empty() {
            why.push(format!("modified {changed:?}"));
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {}",
                c.name,
                why.join("; "),
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
