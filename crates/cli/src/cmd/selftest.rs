//! `ane-train selftest`: a hardware smoke test. Compiles one small kernel per weight mode on the
//! chosen device, evaluates it on asymmetric data, and checks the result against the CPU device
//! running the same program (and the CPU device against a plain f64 loop).
//!
//! Shapes (IC = OC = 64 channels, S = 512 positions; every surface >= 48 KiB, last dims
//! multiples of 16, so the Neural Engine rules hold):
//! - Baked:  in x [1,IC,1,S]; BLOBFILE w [OC,IC,1,1]; out y [1,OC,1,S] = conv1x1(x, w).
//! - Packed: in x [1,IC,1,S+OC] = [act | Wᵀ]; out y [1,OC,1,S], y[o,s] = Σ_i act[i,s]·Wᵀ[i,o]
//!   (reference §3.3).
//! - Params: in act [1,IC,1,S], wt [1,OC,1,IC] (a second parameter whose name sorts after
//!   `act`; both allocated at the larger size, rule 2); out y [1,OC,1,S] = wt · act.
//!
//! The data is neither constant nor symmetric, so swapped inputs or a transposed weight give
//! a visible error (unlike upstream PR #22's all-ones / identity test).

use std::process::ExitCode;

use ane_mil::blob::BlobWriter;
use ane_mil::builder::FunctionBuilder;
use ane_mil::{samples, DType, Dialect, Program, TensorType};
use ane_runtime::{Device, Surface, TensorDesc, Weights};
use anyhow::{anyhow, ensure, Context, Result};
use clap::Args;
use half::f16;

/// Arguments of `ane-train selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Device to test: `ane` (the Neural Engine, macOS on Apple Silicon), `ane-sim` or `cpu`.
    #[arg(long, default_value = "ane")]
    pub device: String,
}

/// Input and output channels of every test kernel.
const CH: usize = 64;
/// Sequence positions of every test kernel.
const SEQ: usize = 512;
/// BLOBFILE path of the baked weight.
const BLOB: &str = "@model_path/weights/selftest_w.bin";

/// One kernel to check: its program, weights, named inputs and the f64 reference output.
struct Case {
    mode: &'static str,
    what: &'static str,
    program: Program,
    weights: Weights,
    inputs: Vec<(&'static str, Vec<f32>)>,
    reference: Vec<f32>,
}

/// Runs the self-test; exit code 0 only when every weight mode passes.
pub fn run(args: &SelftestArgs) -> Result<ExitCode> {
    let device = ane_runtime::open(&args.device)
        .with_context(|| format!("opening device `{}`", args.device))?;
    let cpu = ane_runtime::open("cpu").context("opening the cpu reference device")?;
    println!(
        "selftest on {} ({})",
        device.capabilities().kind,
        device.capabilities().description
    );
    let mut failed = 0;
    for case in [baked()?, packed()?, params()?] {
        match check(device.as_ref(), cpu.as_ref(), &case) {
            Ok(line) => println!("PASS  {:<6} {:<36} {line}", case.mode, case.what),
            Err(e) => {
                failed += 1;
                println!("FAIL  {:<6} {:<36} {e:#}", case.mode, case.what);
            }
        }
    }
    if failed == 0 {
        println!("all 3 weight modes pass on {}", device.capabilities().kind);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{failed} of 3 weight modes FAILED on {}",
            device.capabilities().kind
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Evaluates `case` on `device` and on `cpu`; describes the largest differences.
fn check(device: &dyn Device, cpu: &dyn Device, case: &Case) -> Result<String> {
    let want = evaluate(cpu, case).context("on the cpu reference device")?;
    let got = evaluate(device, case)?;
    let host = compare(&want, &case.reference).context("cpu device vs f64 loop")?;
    let dev = compare(&got, &want).context("device vs cpu device")?;
    Ok(format!(
        "max |device - cpu| = {dev:.4}, max |cpu - f64| = {host:.4}"
    ))
}

/// fp16 tolerance: the device computes in fp16 (10-bit mantissa) and accumulates 64 products.
fn tolerance(want: f32) -> f32 {
    0.02 + 0.01 * want.abs()
}

/// The largest absolute difference, or an error naming the first element out of tolerance.
fn compare(got: &[f32], want: &[f32]) -> Result<f32> {
    ensure!(
        got.len() == want.len(),
        "{} values, expected {}",
        got.len(),
        want.len()
    );
    let mut max = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        if d.is_nan() || d > tolerance(w) {
            let (o, s) = (i / SEQ, i % SEQ);
            return Err(anyhow!(
                "y[{o},{s}] = {g}, expected {w} (|diff| {d} > {})",
                tolerance(w)
            ));
        }
        max = max.max(d);
    }
    Ok(max)
}

/// Compiles, binds and evaluates `case` once on `dev`; returns its only output.
fn evaluate(dev: &dyn Device, case: &Case) -> Result<Vec<f32>> {
    let kernel = dev
        .compile(&case.program, &case.weights)
        .context("compile")?;
    let info = kernel.info().clone();
    // Rules 2 and 3: every input (and every output) gets the same, largest allocation.
    let alloc = |descs: &[TensorDesc]| {
        descs
            .iter()
            .map(|d| d.ty.num_elements().unwrap_or(0) * 2)
            .max()
            .unwrap_or(0)
            .max(dev.capabilities().min_surface_bytes)
    };
    let surfaces = |descs: &[TensorDesc]| -> Result<Vec<_>> {
        let bytes = alloc(descs);
        descs
            .iter()
            .map(|d| {
                dev.surface_with_alloc(&d.ty.shape, DType::Fp16, bytes)
                    .with_context(|| format!("allocating `{}`", d.name))
            })
            .collect()
    };
    let (ins, outs) = (surfaces(&info.inputs)?, surfaces(&info.outputs)?);
    for (name, values) in &case.inputs {
        let i = info
            .input_index(name)
            .ok_or_else(|| anyhow!("the kernel has no input `{name}`"))?;
        ins[i].write_f32(values)?;
    }
    let binding = kernel
        .bind(&by_name(&info.inputs, &ins), &by_name(&info.outputs, &outs))
        .context("bind")?;
    binding.eval().context("eval")?;
    Ok(outs[0].read_f32()?)
}

/// Pairs each declared name with its surface, for `Kernel::bind`.
fn by_name<'a>(descs: &'a [TensorDesc], set: &'a [Surface]) -> Vec<(&'a str, &'a Surface)> {
    descs.iter().map(|d| d.name.as_str()).zip(set).collect()
}

fn fp16(shape: &[usize]) -> TensorType {
    TensorType::new(DType::Fp16, shape.to_vec())
}

fn dim(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `n` deterministic values in [-1, 1), rounded to fp16, with no symmetry or repetition that
/// would hide a swap or a transpose.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            f16::from_f32(2.0 * unit - 1.0).to_f32()
        })
        .collect()
}

/// `y[o,s] = Σ_i w[o,i]·x[i,s]` in f64: `w` row-major `[OC,IC]`, `x` `[IC,S]`.
fn linear(w: &[f32], x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; CH * SEQ];
    for o in 0..CH {
        for s in 0..SEQ {
            let acc: f64 = (0..CH)
                .map(|i| f64::from(w[o * CH + i]) * f64::from(x[i * SEQ + s]))
                .sum();
            y[o * SEQ + s] = acc as f32;
        }
    }
    y
}

/// Baked: a 1x1 conv whose weight is a BLOBFILE constant.
fn baked() -> Result<Case> {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, CH, 1, SEQ]))?;
    let w = f.blob_constant("w", fp16(&[CH, CH, 1, 1]), BLOB, 64)?;
    let y = f.conv("y", x, w, 1)?;
    let program = Program::new(Dialect::Ios18, f.finish(&[y])?);
    let wv = data(CH * CH, 1);
    let xv = data(CH * SEQ, 2);
    let mut blob = BlobWriter::new();
    ensure!(
        blob.add_f32_as_f16(&wv) == 64,
        "the weight blob must sit at offset 64"
    );
    let mut weights = Weights::new();
    weights.insert(BLOB, blob.finish());
    Ok(Case {
        mode: "baked",
        what: "1x1 conv, BLOBFILE weight",
        program,
        weights,
        reference: linear(&wv, &xv),
        inputs: vec![("x", xv)],
    })
}

/// Packed: the weight travels beside the activation in the spatial axis of one input.
fn packed() -> Result<Case> {
    let program = samples::dynamic_matmul_packed(CH, CH, SEQ)?;
    let act = data(CH * SEQ, 3);
    let w = data(CH * CH, 4);
    let mut x = Vec::with_capacity(CH * (SEQ + CH));
    for i in 0..CH {
        x.extend_from_slice(&act[i * SEQ..(i + 1) * SEQ]);
        x.extend((0..CH).map(|o| w[o * CH + i]));
    }
    Ok(Case {
        mode: "packed",
        what: "matmul, weights packed in the input",
        program,
        weights: Weights::new(),
        reference: linear(&w, &act),
        inputs: vec![("x", x)],
    })
}

/// Params: the weight is a second function parameter, `wt`, sorting after `act`.
fn params() -> Result<Case> {
    let mut f = FunctionBuilder::new("main");
    let act = f.input("act", fp16(&[1, CH, 1, SEQ]))?;
    let wt = f.input("wt", fp16(&[1, CH, 1, CH]))?;
    let a = f.reshape("a", act, &[1, 1, dim(CH), dim(SEQ)])?;
    let w = f.reshape("w", wt, &[1, 1, dim(CH), dim(CH)])?;
    let yh = f.matmul("yh", w, a, false, false)?;
    let y = f.reshape("y", yh, &[1, dim(CH), 1, dim(SEQ)])?;
    let program = Program::new(Dialect::Ios18, f.finish(&[y])?);
    let av = data(CH * SEQ, 5);
    let wv = data(CH * CH, 6);
    Ok(Case {
        mode: "params",
        what: "matmul, weights as a 2nd parameter",
        program,
        weights: Weights::new(),
        reference: linear(&wv, &av),
        inputs: vec![("act", av), ("wt", wv)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_passes_on_the_simulator_and_cpu() {
        for device in ["ane-sim", "cpu"] {
            let code = run(&SelftestArgs {
                device: device.into(),
            })
            .unwrap();
            assert_eq!(code, ExitCode::SUCCESS, "{device}");
        }
    }

    #[test]
    fn the_data_is_asymmetric() {
        let w = data(CH * CH, 1);
        assert!(w.iter().any(|&v| v != w[0]));
        assert!((0..CH).any(|o| (0..CH).any(|i| w[o * CH + i] != w[i * CH + o])));
    }

    #[test]
    fn a_swap_is_detected() {
        let case = params().unwrap();
        let swapped = linear(&data(CH * CH, 5), &data(CH * SEQ, 6));
        assert!(compare(&swapped, &case.reference).is_err());
    }
}
