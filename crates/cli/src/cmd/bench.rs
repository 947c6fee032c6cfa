//! `ane-train bench runtime`: the CPU executor measured against references, side by side.
//!
//! Every number is a median over repeats (with min and max), and every comparison runs its two
//! sides alternately in the same process, because these machines are noisy:
//! - `matmul_efficiency`: throughput of a `[1,768,1,256] x [768,768]` matmul kernel divided by
//!   the throughput of the `gemm` crate called directly on the same contiguous shape;
//! - `empty_eval_us`: one eval of an identity kernel (a 16 KiB copy) — the executor's overhead;
//! - `packed_over_params`: time of the Packed linear layer over the Params one (same math), with
//!   the Baked form in the same table;
//! - realtime: p50/p99 eval latency with and without `realtime_begin`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ane_mil::blob::BlobWriter;
use ane_mil::builder::FunctionBuilder;
use ane_mil::{samples, DType, Dialect, Program, TensorType};
use ane_runtime::{Binding, Device, Realtime, Surface, Weights};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::bench_common::Stat;

/// `ane-train bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// CPU executor: matmul efficiency, empty-eval overhead, weight modes, realtime latency.
    Runtime(RuntimeArgs),
    /// One forward+backward of a model, split into device kernels, host ops, surface traffic.
    ForwardBackward(ForwardBackwardArgs),
    /// Baked, Packed and Params training updates side by side on every device that opens.
    WeightModes(super::bench_weight_modes::WeightModesArgs),
    /// Baked mode under a compile budget: one real training run per accumulation.
    Accum(super::bench_accum::AccumArgs),
    /// Recompile cycles with the surface pool on and off.
    Pool(super::bench_pool::PoolArgs),
}

/// Arguments of `bench runtime`.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Repeats per measurement (medians are over these).
    #[arg(long, default_value_t = 9)]
    pub repeats: usize,
    /// Evals per latency distribution in the realtime comparison, 1 to 10^7.
    #[arg(long, default_value_t = 2000)]
    pub latency_evals: usize,
}

/// Runs a bench subcommand.
pub fn run(cmd: &BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Runtime(args) => runtime(args),
        BenchCommand::ForwardBackward(args) => forward_backward(args),
        BenchCommand::WeightModes(args) => super::bench_weight_modes::run(args),
        BenchCommand::Accum(args) => super::bench_accum::run(args),
        BenchCommand::Pool(args) => super::bench_pool::run(args),
    }
}

/// Percentiles of one latency distribution, microseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

/// A kernel bound to fresh surfaces filled with deterministic data.
struct Bench {
    binding: Binding,
    _surfaces: Vec<Surface>,
}

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn prepare(device: &dyn Device, program: &Program, weights: &Weights) -> Result<Bench> {
    let kernel = device.compile(program, weights)?;
    let info = kernel.info().clone();
    let mut surfaces = Vec::new();
    for (i, d) in info.inputs.iter().enumerate() {
        let s = device.surface(&d.ty.shape, DType::Fp32)?;
        s.write_f32(&fill(s.elements(), i as u32 + 1))?;
        surfaces.push(s);
    }
    let n_in = surfaces.len();
    for d in &info.outputs {
        surfaces.push(device.surface(&d.ty.shape, DType::Fp32)?);
    }
    let ins: Vec<(&str, &Surface)> = info
        .inputs
        .iter()
        .map(|d| d.name.as_str())
        .zip(&surfaces[..n_in])
        .collect();
    let outs: Vec<(&str, &Surface)> = info
        .outputs
        .iter()
        .map(|d| d.name.as_str())
        .zip(&surfaces[n_in..])
        .collect();
    let binding = kernel.bind(&ins, &outs)?;
    binding.eval()?;
    Ok(Bench {
        binding,
        _surfaces: surfaces,
    })
}

/// Seconds per call of `f`, averaged over enough calls to take about `target` seconds.
fn time_per_call(target: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    let once = t.elapsed().as_secs_f64().max(1e-9);
    let n = ((target / once) as usize).clamp(1, 1_000_000);
    let t = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / n as f64)
}

fn baked_linear(ic: usize, oc: usize, seq: usize) -> Result<(Program, Weights)> {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", TensorType::new(DType::Fp16, [1, ic, 1, seq]))?;
    let w = f.blob_constant(
        "w",
        TensorType::new(DType::Fp16, [oc, ic, 1, 1]),
        "@model_path/weights/w.bin",
        64,
    )?;
    let y = f.conv("y", x, w, 1)?;
    let program = Program::new(Dialect::Ios18, f.finish(&[y])?);
    let mut blob = BlobWriter::new();
    blob.add_f32_as_f16(&fill(oc * ic, 7));
    let mut weights = Weights::new();
    weights.insert("@model_path/weights/w.bin", blob.finish());
    Ok((program, weights))
}

fn identity(c: usize, s: usize) -> Result<Program> {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", TensorType::new(DType::Fp16, [1, c, 1, s]))?;
    Ok(Program::new(Dialect::Ios18, f.finish(&[x])?))
}

fn runtime(args: &RuntimeArgs) -> Result<ExitCode> {
    if !(1..=10_000_000).contains(&args.latency_evals) {
        anyhow::bail!(
            "--latency-evals is {}; it must be from 1 to 10000000 (evals per latency distribution)",
            args.latency_evals
        );
    }
    let repeats = args.repeats.max(3);
    let device = ane_runtime::open("cpu")?;
    let (ic, oc, seq) = (768usize, 768usize, 256usize);
    println!(
        "ane-train bench runtime — {} ; {} repeats, medians [min, max]",
        device.capabilities().description,
        repeats
    );

    // Matmul kernel vs the gemm crate on the same shape.
    let params = prepare(
        device.as_ref(),
        &samples::dynamic_matmul_params(Dialect::Ios18, ic, oc, seq)?,
        &Weights::new(),
    )?;
    let a = fill(oc * ic, 3);
    let b = fill(ic * seq, 4);
    let mut c = vec![0f32; oc * seq];
    let threads = rayon::current_num_threads();
    let mut direct = || -> Result<()> {
        // SAFETY: a is oc×ic, b is ic×seq, c is oc×seq, all contiguous row-major.
        unsafe {
            gemm::gemm(
                oc,
                seq,
                ic,
                c.as_mut_ptr(),
                1,
                seq as isize,
                false,
                a.as_ptr(),
                1,
                ic as isize,
                b.as_ptr(),
                1,
                seq as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            )
        };
        Ok(())
    };
    let flops = 2.0 * (ic * oc * seq) as f64;
    let (mut kern, mut dir, mut eff) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        let tk = time_per_call(0.15, || Ok(params.binding.eval()?))?;
        let td = time_per_call(0.15, &mut direct)?;
        kern.push(flops / tk / 1e9);
        dir.push(flops / td / 1e9);
        eff.push(td / tk);
    }
    let (kern, dir, eff) = (Stat::of(kern), Stat::of(dir), Stat::of(eff));
    println!("\nmatmul [1,{ic},1,{seq}] x [{oc},{ic}]");
    println!(
        "  kernel (Params form)  {:8.2} GFLOP/s  [{:.2}, {:.2}]",
        kern.median, kern.min, kern.max
    );
    println!(
        "  gemm crate directly   {:8.2} GFLOP/s  [{:.2}, {:.2}]",
        dir.median, dir.min, dir.max
    );
    println!(
        "  matmul_efficiency     {:8.3}          [{:.3}, {:.3}]  (target >= 0.85)",
        eff.median, eff.min, eff.max
    );

    // Empty-kernel overhead.
    let empty = prepare(device.as_ref(), &identity(64, 64)?, &Weights::new())?;
    let mut us = Vec::new();
    for _ in 0..repeats {
        us.push(time_per_call(0.05, || Ok(empty.binding.eval()?))? * 1e6);
    }
    let empty_us = Stat::of(us);
    println!("\nempty kernel (identity, [1,64,1,64] fp32)");
    println!(
        "  empty_eval_us         {:8.3} us       [{:.3}, {:.3}]  (target <= 5)",
        empty_us.median, empty_us.min, empty_us.max
    );

    // Weight modes, same linear layer.
    let packed = prepare(
        device.as_ref(),
        &samples::dynamic_matmul_packed(ic, oc, seq)?,
        &Weights::new(),
    )?;
    let (baked_prog, baked_w) = baked_linear(ic, oc, seq)?;
    let baked = prepare(device.as_ref(), &baked_prog, &baked_w)?;
    let (mut tp, mut tq, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        let p = time_per_call(0.15, || Ok(params.binding.eval()?))?;
        let q = time_per_call(0.15, || Ok(packed.binding.eval()?))?;
        let b = time_per_call(0.15, || Ok(baked.binding.eval()?))?;
        tp.push(p * 1e3);
        tq.push(q * 1e3);
        tb.push(b * 1e3);
        ratio.push(q / p);
    }
    let (tp, tq, tb, ratio) = (Stat::of(tp), Stat::of(tq), Stat::of(tb), Stat::of(ratio));
    println!("\nlinear layer {ic}->{oc}, seq {seq}, by weight mode (ms per eval)");
    for (name, s) in [("Params", tp), ("Packed", tq), ("Baked", tb)] {
        println!(
            "  {name:<8} {:8.3} ms  [{:.3}, {:.3}]",
            s.median, s.min, s.max
        );
    }
    println!(
        "  packed_over_params    {:8.3}          [{:.3}, {:.3}]  (target <= 1.10)",
        ratio.median, ratio.min, ratio.max
    );

    // Realtime: latency distribution with and without.
    let mut rms_w = Weights::new();
    let mut blob = BlobWriter::new();
    blob.add_f32_as_f16(&fill(ic, 9));
    rms_w.insert("@model_path/weights/rms.bin", blob.finish());
    let lat = prepare(device.as_ref(), &samples::rmsnorm(ic, seq)?, &rms_w)?;
    let dist = |rt: bool| -> Result<(Latency, Option<String>)> {
        let note = if rt {
            match device.realtime_begin() {
                Realtime::Active => None,
                Realtime::Unavailable(r) => Some(r),
            }
        } else {
            None
        };
        let mut v = Vec::with_capacity(args.latency_evals);
        for _ in 0..args.latency_evals {
            let t = Instant::now();
            lat.binding.eval()?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if rt {
            device.realtime_end();
        }
        v.sort_by(f64::total_cmp);
        let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        Ok((
            Latency {
                p50: p(0.5),
                p99: p(0.99),
                max: v[v.len() - 1],
            },
            note,
        ))
    };
    let (off, _) = dist(false)?;
    let (on, note) = dist(true)?;
    println!(
        "\neval latency, RMSNorm [1,{ic},1,{seq}], {} evals (us)",
        args.latency_evals
    );
    println!(
        "  realtime off   p50 {:8.1}   p99 {:8.1}   max {:8.1}",
        off.p50, off.p99, off.max
    );
    println!(
        "  realtime on    p50 {:8.1}   p99 {:8.1}   max {:8.1}",
        on.p50, on.p99, on.max
    );
    if let Some(r) = &note {
        println!("  (realtime was not granted: {r})");
    }

    if let Some(path) = &args.json {
        let j = serde_json::json!({
            "device": device.capabilities().description,
            "repeats": repeats,
            "matmul_efficiency": eff.median,
            "matmul_efficiency_stats": eff.json(),
            "matmul_kernel_gflops": kern.json(),
            "matmul_gemm_gflops": dir.json(),
            "empty_eval_us": empty_us.median,
            "empty_eval_us_stats": empty_us.json(),
            "packed_over_params": ratio.median,
            "packed_over_params_stats": ratio.json(),
            "weight_modes_ms": { "params": tp.json(), "packed": tq.json(), "baked": tb.json() },
            "realtime": {
                "granted": note.is_none(),
                "reason": note,
                "off_us": { "p50": off.p50, "p99": off.p99, "max": off.max },
                "on_us": { "p50": on.p50, "p99": on.p99, "max": on.max },
            },
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `bench forward-backward`.
#[derive(Debug, Args)]
pub struct ForwardBackwardArgs {
    /// Model preset (stories260k, stories15m, stories42m, stories110m, qwen3-0.6b) or a TOML file.
    #[arg(long, default_value = "stories110m")]
    pub model: String,
    /// Device: cpu, ane-sim, ane or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight mode: baked, packed or params.
    #[arg(long, default_value = "params")]
    pub mode: String,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Kernel set: auto (the device's: cpu on `cpu`, neural-engine elsewhere), cpu (fused
    /// host attention) or neural-engine (the decomposed attention the hardware runs).
    #[arg(long, default_value = "auto")]
    pub kernel_set: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn forward_backward(args: &ForwardBackwardArgs) -> Result<ExitCode> {
    use ane_train::kernels::{KernelSet, WeightMode};
    use ane_train::llama::{init_params, Model, StepTimings};
    use ane_train::model::ModelConfig;
    let cfg = if args.model.ends_with(".toml") {
        ModelConfig::from_toml_file(&args.model)?
    } else {
        ModelConfig::preset(&args.model)?
    };
    let mode = match args.mode.as_str() {
        "baked" => WeightMode::Baked,
        "packed" => WeightMode::Packed,
        "params" => WeightMode::Params,
        other => anyhow::bail!("--mode {other:?}: expected baked, packed or params"),
    };
    let device = ane_runtime::open(&args.device)?;
    let set = match args.kernel_set.as_str() {
        "auto" => KernelSet::for_device(device.capabilities()),
        "cpu" => KernelSet::Cpu,
        "neural-engine" => KernelSet::NeuralEngine,
        other => anyhow::bail!("--kernel-set {other:?}: expected auto, cpu or neural-engine"),
    };
    println!(
        "ane-train bench forward-backward — {} ({} layers, dim {}, seq {}), {} mode, {} kernel set, {}",
        cfg.name,
        cfg.n_layers,
        cfg.dim,
        cfg.seq_len,
        mode.name(),
        set.name(),
        device.capabilities().description
    );
    let t = Instant::now();
    let params = init_params(&cfg, 42);
    let mut model = Model::with_kernel_set(cfg.clone(), device, mode, params, set)?;
    println!("  compiled in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let tokens: Vec<u32> = fill(cfg.seq_len + 1, 5)
        .iter()
        .map(|x| ((x + 1.0) * 0.5 * (cfg.vocab_size - 1) as f32) as u32)
        .collect();
    // One gradient buffer for every step, as the trainer keeps one.
    let mut grads = vec![0.0f32; model.params().len()];
    model.loss_and_grads_into(&tokens, &mut grads)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut loss = 0.0;
    let kinds = model.kernel_set().kinds();
    let mut steps = Vec::new();
    for _ in 0..args.steps.max(1) {
        loss = model.loss_and_grads_into(&tokens, &mut grads)?;
        steps.push(model.timings());
    }
    let column = |f: &dyn Fn(&StepTimings) -> std::time::Duration| {
        Stat::of(steps.iter().map(|t| ms(f(t))).collect())
    };
    let rows = [
        ("total", column(&|t| t.total)),
        ("device kernels", column(&|t| t.device)),
        ("host ops", column(&|t| t.host)),
        ("  host attention", column(&|t| t.attention)),
        ("  host classifier", column(&|t| t.classifier)),
        ("surface traffic", column(&|t| t.traffic)),
        ("host + traffic", column(&|t| t.host + t.traffic)),
    ];
    println!(
        "  loss {loss:.4} (random init; ln V = {:.4})",
        (cfg.vocab_size as f64).ln()
    );
    println!(
        "  ms per forward+backward, median of {} [min, max]:",
        args.steps.max(1)
    );
    for (name, s) in &rows {
        println!(
            "    {name:<17} {:9.1}  [{:.1}, {:.1}]",
            s.median, s.min, s.max
        );
    }
    println!("  device ms per kernel kind (all layers), median:");
    let per_kernel: Vec<(&str, Stat)> = kinds
        .iter()
        .map(|k| (k.name(), column(&|t| t.per_kernel[k.index()])))
        .collect();
    for (name, s) in &per_kernel {
        println!("    {name:<16} {:9.1}", s.median);
    }
    if let Some(path) = &args.json {
        let mut j = serde_json::json!({ "model": cfg.name, "mode": mode.name(), "device": args.device, "loss": loss });
        for (name, s) in &rows {
            // "host + traffic" → "host_traffic_ms": words joined by underscores.
            let words: Vec<&str> = name
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            j[words.join("_") + "_ms"] = s.json();
        }
        for (name, s) in &per_kernel {
            j["kernel_ms"][name] = s.json();
        }
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
