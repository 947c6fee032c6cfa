//! Models in and out, end to end: `tokenizer train` → `tokenize` → `train --data` →
//! `generate` → `export` (llama2.c and safetensors, tokenizer beside) → `generate` from the
//! exported files gives the same greedy text; llama2.c re-export is byte-exact; `train
//! --init` fine-tunes an exported file; bad input is refused with the file and field named.

use std::path::{Path, PathBuf};
use std::process::Command;

use ane_train::data::{corpus, split_documents};
use ane_train::tokenizer::Llama2cTokenizer;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ane-train-fmt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn p(x: &Path) -> &str {
    x.to_str().expect("temp paths are UTF-8")
}

/// Runs `ane-train args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ane-train"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = run(args);
    assert!(success, "ane-train {args:?} failed:\n{out}\n{err}");
    out
}

#[test]
fn tokenize_train_generate_export_and_reload() {
    let d = tmp("e2e");
    let text: String = corpus::builtin()
        .split("\n\n")
        .take(150)
        .collect::<Vec<_>>()
        .join("\n\n");
    let corpus_path = d.join("corpus.txt");
    std::fs::write(&corpus_path, &text).unwrap();
    let model = d.join("m.toml");
    std::fs::write(
        &model,
        "name = \"m\"\ndim = 32\nn_layers = 1\nn_heads = 4\nhidden_dim = 64\nvocab_size = 259\nseq_len = 32\n",
    )
    .unwrap();
    let tok = d.join("tok.bin");
    ok(&[
        "tokenizer",
        "train",
        "--corpus",
        p(&corpus_path),
        "--vocab",
        "300",
        "--out",
        p(&tok),
    ]);
    let t = Llama2cTokenizer::read(&tok).unwrap();
    assert_eq!(t.vocab_size(), 300);
    let tokens = d.join("tokens.bin");
    let out = ok(&[
        "tokenize",
        "--tokenizer",
        p(&tok),
        "--corpus",
        p(&corpus_path),
        "--out",
        p(&tokens),
    ]);
    assert!(out.contains("tokens/s"), "{out}");
    let want: Vec<u8> = split_documents(text.as_bytes())
        .into_iter()
        .flat_map(|doc| t.encode(doc, true, false))
        .flat_map(|id| (id as u16).to_le_bytes())
        .collect();
    assert!(
        std::fs::read(&tokens).unwrap() == want,
        "token file differs from the encoder's ids"
    );
    let run_dir = d.join("run");
    let out = ok(&[
        "train",
        "--data",
        p(&tokens),
        "--tokenizer",
        p(&tok),
        "--model",
        p(&model),
        "--device",
        "cpu",
        "--steps",
        "3",
        "--sample-tokens",
        "0",
        "--eval-every",
        "0",
        "--out",
        p(&run_dir),
    ]);
    assert!(out.contains("vocabulary 259 -> 300"), "{out}");
    let ckpt = run_dir.join("checkpoint.bin");
    let gen = |model_flag: &str, file: &Path, extra: &[&str]| {
        let mut args = vec![
            "generate",
            model_flag,
            p(file),
            "--prompt",
            "Once upon",
            "--steps",
            "24",
            "--temperature",
            "0",
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let greedy = gen("--checkpoint", &ckpt, &[]);
    assert!(greedy.starts_with("Once upon"), "{greedy}");
    let bin = d.join("model.bin");
    let tok_out = d.join("tok-out.bin");
    ok(&[
        "export",
        "--checkpoint",
        p(&ckpt),
        "--format",
        "llama2c",
        "--out",
        p(&bin),
        "--tokenizer-out",
        p(&tok_out),
    ]);
    assert!(
        std::fs::read(&tok_out).unwrap() == std::fs::read(&tok).unwrap(),
        "the checkpoint's tokenizer"
    );
    assert_eq!(
        gen("--model-file", &bin, &["--tokenizer", p(&tok_out)]),
        greedy
    );
    let bin2 = d.join("model2.bin");
    ok(&[
        "export",
        "--checkpoint",
        p(&bin),
        "--format",
        "llama2c",
        "--out",
        p(&bin2),
    ]);
    assert!(
        std::fs::read(&bin).unwrap() == std::fs::read(&bin2).unwrap(),
        "re-export is byte-exact"
    );
    let hf = d.join("hf");
    ok(&[
        "export",
        "--checkpoint",
        p(&ckpt),
        "--format",
        "safetensors",
        "--out",
        p(&hf),
    ]);
    assert_eq!(gen("--checkpoint", &hf, &["--tokenizer", p(&tok)]), greedy);
    let out = ok(&[
        "train",
        "--init",
        p(&bin),
        "--tokenizer",
        p(&tok),
        "--corpus",
        p(&corpus_path),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--sample-tokens",
        "0",
        "--eval-every",
        "0",
        "--out",
        p(&d.join("ft")),
    ]);
    assert!(out.contains("llama2c"), "{out}");
    // Refusals name the file and the field.
    let (success, _, err) = run(&["generate", "--model-file", p(&bin), "--steps", "4"]);
    assert!(!success && err.contains("carries no tokenizer"), "{err}");
    let bytes = std::fs::read(&bin).unwrap();
    let cut = d.join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 8]).unwrap();
    let (success, _, err) = run(&["generate", "--model-file", p(&cut), "--tokenizer", p(&tok)]);
    assert!(
        !success && err.contains("cut.bin") && err.contains("file size"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
