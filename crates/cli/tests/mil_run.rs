//! `ane-train mil run`: a MIL file with BLOBFILE weights, inputs from .npy, outputs to .npy,
//! checked against an f64 reference; and the errors for bad inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use npyz::WriterBuilder;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ane-train"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ane-milrun-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_npy_f32(path: &Path, shape: &[u64], data: &[f32]) {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn read_npy(path: &Path) -> (Vec<u64>, String, Vec<f32>) {
    let npy = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = npy.shape().to_vec();
    let dtype = npy.dtype().descr().trim_matches('\'').to_string();
    let data = if dtype == "<f2" {
        npy.into_vec::<half::f16>()
            .unwrap()
            .into_iter()
            .map(f32::from)
            .collect()
    } else {
        npy.into_vec::<f32>().unwrap()
    };
    (shape, dtype, data)
}

/// The demo's RMSNorm kernel: weights 1 + c/D, eps 1e-5.
fn rmsnorm_ref(x: &[f32], d: usize, s: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * s];
    for j in 0..s {
        let ms: f64 = (0..d).map(|c| (x[c * s + j] as f64).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + 1e-5).sqrt();
        for c in 0..d {
            out[c * s + j] = x[c * s + j] as f64 * r * (1.0 + c as f64 / d as f64);
        }
    }
    out
}

#[test]
fn runs_a_kernel_with_blobfile_weights_on_cpu_and_ane_sim() {
    let (d, s) = (64usize, 32usize);
    let dir = tmp("rms");
    let demo = bin()
        .args(["demo", "--dim", "64", "--seq", "32", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(demo.status.success());
    let x: Vec<f32> = (0..d * s)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let xin = dir.join("x.npy");
    write_npy_f32(&xin, &[1, d as u64, 1, s as u64], &x);
    let want = rmsnorm_ref(&x, d, s);
    for (device, tol) in [("cpu", 2e-3), ("ane-sim", 2e-2)] {
        let out = dir.join(format!("out-{device}"));
        let run = bin()
            .args(["mil", "run"])
            .arg(dir.join("model.mil"))
            .args(["--device", device, "--input"])
            .arg(format!("x={}", xin.display()))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (shape, dtype, y) = read_npy(&out.join("y.npy"));
        assert_eq!(shape, vec![1, d as u64, 1, s as u64]);
        assert_eq!(dtype, "<f2", "the kernel declares an fp16 output");
        for (i, (&g, &w)) in y.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
                "{device}: y[{i}] = {g}, want {w}"
            );
        }
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tmp("bad");
    assert!(bin()
        .args(["demo", "--dim", "64", "--seq", "32", "--out"])
        .arg(&dir)
        .output()
        .unwrap()
        .status
        .success());
    let wrong = dir.join("wrong.npy");
    write_npy_f32(&wrong, &[1, 64, 1, 16], &vec![0.0; 64 * 16]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!("x={}", wrong.display())],
            "shape [1, 64, 1, 16] does not match the declared [1, 64, 1, 32]",
        ),
        (vec![], "input `x` (tensor<fp16, [1,64,1,32]>) is not given"),
        (
            vec![format!("q={}", wrong.display())],
            "the kernel has no input `q` (its inputs: x)",
        ),
        (vec!["x".into()], "expected NAME=PATH.npy"),
        (
            vec![format!("x={}", dir.join("model.mil").display())],
            "not a valid .npy file",
        ),
    ];
    for (inputs, want) in cases {
        let mut cmd = bin();
        cmd.args(["mil", "run"])
            .arg(dir.join("model.mil"))
            .args(["--out"])
            .arg(dir.join("o"));
        for i in &inputs {
            cmd.args(["--input", i]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{inputs:?}: {err}");
    }
}
