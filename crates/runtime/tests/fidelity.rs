//! `ane-sim` fidelity: every Neural Engine rule (`ane-pitfalls.md` §A) that can be broken by a
//! program or a binding fails with the exact rule, a message naming the rule number, the
//! hardware symptom and a fix — while the same program runs on `cpu`; and every op result is
//! rounded to fp16.

mod common;

use ane_mil::blob::BlobWriter;
use ane_mil::builder::FunctionBuilder;
use ane_mil::{DType, Dialect, Literal, Op, Program, TensorType};
use ane_runtime::rules::AneRule;
use ane_runtime::{Error, Surface, Weights};
use common::{r16, Rng};

fn fp16(shape: &[usize]) -> TensorType {
    TensorType::new(DType::Fp16, shape.to_vec())
}

fn program(f: FunctionBuilder, outs: &[ane_mil::builder::Var]) -> Program {
    Program::new(Dialect::Ios18, f.finish(outs).unwrap())
}

/// Asserts `err` is rule `rule` and its message names the number, the symptom and a fix.
fn assert_rule(err: Error, rule: AneRule) {
    let msg = err.to_string();
    match &err {
        Error::Rule { rule: got, fix, .. } => {
            assert_eq!(*got, rule, "{msg}");
            assert!(!fix.is_empty(), "{msg}");
        }
        other => panic!("expected rule {rule:?}, got {other:?}"),
    }
    assert!(
        msg.contains(&format!("ANE rule {}:", rule.number())),
        "{msg}"
    );
    assert!(msg.contains(rule.symptom()), "{msg}");
    assert!(msg.contains("fix: "), "{msg}");
}

/// Compiling fails on ane-sim with `rule`, and succeeds on cpu.
fn compile_breaks(p: &Program, w: &Weights, rule: AneRule) {
    let sim = ane_runtime::open("ane-sim").unwrap();
    assert_rule(sim.compile(p, w).unwrap_err(), rule);
    let cpu = ane_runtime::open("cpu").unwrap();
    cpu.compile(p, w)
        .unwrap_or_else(|e| panic!("cpu should compile what breaks {rule:?}: {e}"));
}

/// `y = x + 1` over `[1, 4, 1, 32]` fp16.
fn add_one() -> Program {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 32])).unwrap();
    let y = f.add("y", x, Literal::fp16(1.0)).unwrap();
    program(f, &[y])
}

/// `z = a + b`, `w = a - b`.
fn two_in_two_out() -> Program {
    let mut f = FunctionBuilder::new("main");
    let a = f.input("a", fp16(&[1, 4, 1, 32])).unwrap();
    let b = f.input("b", fp16(&[1, 4, 1, 32])).unwrap();
    let z = f.add("z", a, b).unwrap();
    let w = f.sub("w", a, b).unwrap();
    program(f, &[z, w])
}

#[test]
fn rule_1_surface_below_48_kib() {
    let p = add_one();
    let sim = ane_runtime::open("ane-sim").unwrap();
    let k = sim.compile(&p, &Weights::new()).unwrap();
    let small = sim
        .surface_with_alloc(&[1, 4, 1, 32], DType::Fp16, 256)
        .unwrap();
    let out = sim.surface(&[1, 4, 1, 32], DType::Fp16).unwrap();
    assert_rule(
        k.bind(&[("x", &small)], &[("y", &out)]).unwrap_err(),
        AneRule::MinSurfaceSize,
    );
    // Small output, too.
    let x = sim.surface(&[1, 4, 1, 32], DType::Fp16).unwrap();
    let small_out = sim
        .surface_with_alloc(&[1, 4, 1, 32], DType::Fp16, 49_151)
        .unwrap();
    assert_rule(
        k.bind(&[("x", &x)], &[("y", &small_out)]).unwrap_err(),
        AneRule::MinSurfaceSize,
    );
    // Device::surface pads to the minimum, so the ordinary path binds.
    assert_eq!(x.alloc_bytes(), 49_152);
    k.bind(&[("x", &x)], &[("y", &out)])
        .unwrap()
        .eval()
        .unwrap();
    // cpu takes the small surfaces.
    let cpu = ane_runtime::open("cpu").unwrap();
    let kc = cpu.compile(&p, &Weights::new()).unwrap();
    let a = cpu
        .surface_with_alloc(&[1, 4, 1, 32], DType::Fp16, 256)
        .unwrap();
    let b = cpu
        .surface_with_alloc(&[1, 4, 1, 32], DType::Fp16, 256)
        .unwrap();
    kc.bind(&[("x", &a)], &[("y", &b)]).unwrap().eval().unwrap();
}

fn sized(dev: &str, allocs: [usize; 4]) -> Vec<Surface> {
    let d = ane_runtime::open(dev).unwrap();
    allocs
        .iter()
        .map(|&n| {
            d.surface_with_alloc(&[1, 4, 1, 32], DType::Fp16, n)
                .unwrap()
        })
        .collect()
}

#[test]
fn rule_2_and_3_unequal_allocation_sizes() {
    let p = two_in_two_out();
    let sim = ane_runtime::open("ane-sim").unwrap();
    let k = sim.compile(&p, &Weights::new()).unwrap();
    let cpu = ane_runtime::open("cpu").unwrap();
    let kc = cpu.compile(&p, &Weights::new()).unwrap();
    for (allocs, rule) in [
        ([49_152, 65_536, 49_152, 49_152], AneRule::EqualInputSizes),
        ([65_536, 65_536, 49_152, 98_304], AneRule::EqualOutputSizes),
    ] {
        let s = sized("ane-sim", allocs);
        let err = k
            .bind(&[("a", &s[0]), ("b", &s[1])], &[("z", &s[2]), ("w", &s[3])])
            .unwrap_err();
        assert_rule(err, rule);
        let c = sized("cpu", allocs);
        kc.bind(&[("a", &c[0]), ("b", &c[1])], &[("z", &c[2]), ("w", &c[3])])
            .unwrap()
            .eval()
            .unwrap();
    }
    // Equal inputs and equal outputs of different sizes are fine.
    let s = sized("ane-sim", [65_536, 65_536, 49_152, 49_152]);
    k.bind(&[("a", &s[0]), ("b", &s[1])], &[("z", &s[2]), ("w", &s[3])])
        .unwrap()
        .eval()
        .unwrap();
}

#[test]
fn rule_5_spatial_width() {
    for (shape, out_only) in [
        (vec![1, 4, 1, 40], false),
        (vec![1, 4, 1, 16], false),
        (vec![4, 8], false),
        (vec![1, 4, 1, 64], true),
    ] {
        let mut f = FunctionBuilder::new("main");
        let x = f.input("x", fp16(&shape)).unwrap();
        let y = if out_only {
            // Input fine, output [1, 4, 2, 32] sliced to width 24.
            f.slice_by_size("y", x, &[0, 0, 0, 8], &[1, 4, 1, 24])
                .unwrap()
        } else {
            f.unary("y", Op::Exp, x).unwrap()
        };
        compile_breaks(&program(f, &[y]), &Weights::new(), AneRule::SpatialWidth);
    }
}

#[test]
fn rule_6_sdpa_mask() {
    let mut f = FunctionBuilder::new("main");
    let q = f.input("q", fp16(&[1, 2, 32, 32])).unwrap();
    let m = f.input("m", fp16(&[1, 1, 32, 32])).unwrap();
    let o = f
        .scaled_dot_product_attention("o", q, q, q, Some(m))
        .unwrap();
    compile_breaks(&program(f, &[o]), &Weights::new(), AneRule::SdpaMaskIgnored);
}

#[test]
fn rule_7_cast_to_int32() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 32])).unwrap();
    let i = f.cast("i", x, DType::Int32).unwrap();
    let y = f.cast("y", i, DType::Fp16).unwrap();
    compile_breaks(&program(f, &[y]), &Weights::new(), AneRule::UnsupportedOp);
}

#[test]
fn rule_8_rsqrt_and_log_without_epsilon() {
    for op in [Op::Rsqrt, Op::Log] {
        let mut f = FunctionBuilder::new("main");
        let x = f.input("x", fp16(&[1, 4, 1, 32])).unwrap();
        let y = f.op("y", op, vec![("x", x.into())]).unwrap();
        compile_breaks(&program(f, &[y]), &Weights::new(), AneRule::EpsilonRequired);
        // With an epsilon it compiles.
        let mut f = FunctionBuilder::new("main");
        let x = f.input("x", fp16(&[1, 4, 1, 32])).unwrap();
        let y = f
            .op(
                "y",
                op,
                vec![("x", x.into()), ("epsilon", Literal::fp16(1e-3).into())],
            )
            .unwrap();
        let sim = ane_runtime::open("ane-sim").unwrap();
        sim.compile(&program(f, &[y]), &Weights::new()).unwrap();
    }
}

#[test]
fn rule_9_int32_input() {
    let mut f = FunctionBuilder::new("main");
    let x = f
        .input("x", TensorType::new(DType::Int32, [1, 4, 1, 32]))
        .unwrap();
    let y = f.cast("y", x, DType::Fp16).unwrap();
    let p = program(f, &[y]);
    let sim = ane_runtime::open("ane-sim").unwrap();
    assert_rule(
        sim.compile(&p, &Weights::new()).unwrap_err(),
        AneRule::InputDType,
    );
    // cpu compiles it (surfaces are float, so it cannot be bound, but the program is fine).
    ane_runtime::open("cpu")
        .unwrap()
        .compile(&p, &Weights::new())
        .unwrap();
}

#[test]
fn rule_10_dim_limit_and_wide_conv() {
    // A dim above 65,536 inside the program.
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 32_768])).unwrap();
    let r = f.reshape("r", x, &[131_072]).unwrap();
    let e = f.unary("e", Op::Exp, r).unwrap();
    let y = f.reshape("y", e, &[1, 4, 1, 32_768]).unwrap();
    compile_breaks(&program(f, &[y]), &Weights::new(), AneRule::DimLimit);
    // An input dim above 65,536.
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 1, 1, 65_552])).unwrap();
    let y = f.unary("y", Op::Exp, x).unwrap();
    compile_breaks(&program(f, &[y]), &Weights::new(), AneRule::DimLimit);
    // A conv with 32,000 input channels (a vocab-sized contraction).
    let ic = 32_000;
    let mut bw = BlobWriter::new();
    let off = bw.add_f32_as_f16(&vec![0.01; 16 * ic]);
    let mut w = Weights::new();
    w.insert("@model_path/weights/w.bin", bw.finish());
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, ic, 1, 32])).unwrap();
    let wt = f
        .blob_constant("w", fp16(&[16, ic, 1, 1]), "@model_path/weights/w.bin", off)
        .unwrap();
    let y = f.conv("y", x, wt, 1).unwrap();
    compile_breaks(&program(f, &[y]), &w, AneRule::DimLimit);
}

#[test]
fn every_op_result_is_rounded_to_fp16() {
    // (x + 1e-4) - 1 with x = 1: fp16 has no 1.0001, so ane-sim gives 0; cpu computes in f32.
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 32])).unwrap();
    let a = f.add("a", x, Literal::fp16(1e-4)).unwrap();
    let y = f.sub("y", a, Literal::fp16(1.0)).unwrap();
    let z = f.add("z", x, Literal::fp16(1e-4)).unwrap();
    let p = program(f, &[y, z]);
    let run = |dev: &str| -> (Vec<f32>, Vec<f32>) {
        let d = ane_runtime::open(dev).unwrap();
        let k = d.compile(&p, &Weights::new()).unwrap();
        let xs = d.surface(&[1, 4, 1, 32], DType::Fp16).unwrap();
        let ys = d.surface(&[1, 4, 1, 32], DType::Fp16).unwrap();
        let zs = d.surface(&[1, 4, 1, 32], DType::Fp16).unwrap();
        xs.write_f32(&[1.0; 128]).unwrap();
        k.bind(&[("x", &xs)], &[("y", &ys), ("z", &zs)])
            .unwrap()
            .eval()
            .unwrap();
        (ys.read_f32().unwrap(), zs.read_f32().unwrap())
    };
    let (sim_y, sim_z) = run("ane-sim");
    assert!(sim_y.iter().all(|&v| v == 0.0), "{sim_y:?}");
    assert!(sim_z.iter().all(|&v| v == 1.0), "{sim_z:?}");
    let (cpu_y, cpu_z) = run("cpu");
    let e = r16(1e-4);
    assert!(cpu_y.iter().all(|&v| v == r16(e)), "{cpu_y:?}");
    assert!(cpu_y[0] != 0.0);
    // z = 1.0001 is stored into an fp16 surface, so cpu's z also reads back 1.0.
    assert!(cpu_z.iter().all(|&v| v == 1.0));
}

#[test]
fn a_long_chain_accumulates_per_op_rounding() {
    // y ← y·c1 + c2, 40 times (fused into one pass on both devices); ane-sim must equal an f32
    // evaluation that rounds after every op, bit for bit, and drift away from exact f32.
    let (c1, c2) = (r16(1.0137), r16(0.0731));
    let steps = 40;
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 8, 1, 32])).unwrap();
    let mut y = x;
    for i in 0..steps {
        let m = f.mul(&format!("m{i}"), y, Literal::fp16(c1)).unwrap();
        y = f.add(&format!("a{i}"), m, Literal::fp16(c2)).unwrap();
    }
    // A multi-use value in the middle forces a materialised intermediate too.
    let sq = f.mul("sq", y, y).unwrap();
    let out = f.sub("out", sq, y).unwrap();
    let p = program(f, &[y, out]);
    let xs: Vec<f32> = Rng::new(11)
        .vec(256, 0.0, 1.0)
        .iter()
        .map(|&v| r16(v))
        .collect();
    let run = |dev: &str| -> Vec<Vec<f32>> {
        let d = ane_runtime::open(dev).unwrap();
        let k = d.compile(&p, &Weights::new()).unwrap();
        let xi = d.surface(&[1, 8, 1, 32], DType::Fp16).unwrap();
        let o: Vec<Surface> = (0..2)
            .map(|_| d.surface(&[1, 8, 1, 32], DType::Fp16).unwrap())
            .collect();
        xi.write_f32(&xs).unwrap();
        k.bind(&[("x", &xi)], &[("a39", &o[0]), ("out", &o[1])])
            .unwrap()
            .eval()
            .unwrap();
        o.iter().map(|s| s.read_f32().unwrap()).collect()
    };
    let per_op = |v: f32| {
        let mut y = v;
        for _ in 0..steps {
            y = r16(r16(y * c1) + c2);
        }
        let sq = r16(y * y);
        (y, r16(sq - y))
    };
    let exact = |v: f32| {
        let mut y = v;
        for _ in 0..steps {
            y = y * c1 + c2;
        }
        (y, y * y - y)
    };
    let sim = run("ane-sim");
    let cpu = run("cpu");
    let mut drift = 0f32;
    for (i, &v) in xs.iter().enumerate() {
        let (y, o) = per_op(v);
        assert_eq!(sim[0][i].to_bits(), y.to_bits(), "element {i}");
        assert_eq!(sim[1][i].to_bits(), o.to_bits(), "element {i}");
        let (ey, eo) = exact(v);
        // cpu computes in f32 and rounds once, into the fp16 surface.
        assert_eq!(cpu[0][i], r16(ey), "element {i}");
        assert_eq!(cpu[1][i], r16(eo), "element {i}");
        drift = drift.max((sim[0][i] - ey).abs() / ey.abs());
    }
    assert!(
        drift > 2e-3,
        "per-op rounding should drift from f32 (max rel {drift})"
    );
}
