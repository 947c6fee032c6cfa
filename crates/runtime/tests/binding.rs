//! Bindings: rule 4 (alphabetical request slots) emulated by `ane-sim`, output-to-input
//! feeding, binding errors, Surface lock guards and conversions, and weight-file errors.

mod common;

use ane_mil::blob::BlobWriter;
use ane_mil::builder::FunctionBuilder;
use ane_mil::{DType, Dialect, Literal, Op, Program, TensorType};
use ane_runtime::{Error, Feed, Surface, Weights};
use common::{r16, Rng};
use half::f16;

const SHAPE: [usize; 4] = [1, 32, 1, 32];

fn fp16(shape: &[usize]) -> TensorType {
    TensorType::new(DType::Fp16, shape.to_vec())
}

fn program(f: FunctionBuilder, outs: &[ane_mil::builder::Var]) -> Program {
    Program::new(Dialect::Ios18, f.finish(outs).unwrap())
}

/// Inputs declared `x` then `W` (alphabetically `W` < `x`). Outputs: `y = matmul(x, W)` over
/// `[32, 32]` views, then (with `two_outputs`) `B = x - W` (returned after `y`; `B` < `y`).
fn asymmetric(two_outputs: bool) -> Program {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&SHAPE)).unwrap();
    let w = f.input("W", fp16(&SHAPE)).unwrap();
    let xr = f.reshape("xr", x, &[32, 32]).unwrap();
    let wr = f.reshape("wr", w, &[32, 32]).unwrap();
    let m = f.matmul("m", xr, wr, false, false).unwrap();
    let y = f.reshape("y", m, &[1, 32, 1, 32]).unwrap();
    if two_outputs {
        let b = f.sub("B", x, w).unwrap();
        program(f, &[y, b])
    } else {
        program(f, &[y])
    }
}

fn fill(s: &Surface, seed: u64) -> Vec<f32> {
    let v: Vec<f32> = Rng::new(seed)
        .vec(s.elements(), -1.0, 1.0)
        .iter()
        .map(|&x| r16(x))
        .collect();
    s.write_f32(&v).unwrap();
    v
}

/// `y = x·W` (`[32, 32]` row-major), `B = x - W`.
fn reference(x: &[f32], w: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; 32 * 32];
    for i in 0..32 {
        for j in 0..32 {
            y[i * 32 + j] = (0..32).map(|c| x[i * 32 + c] * w[c * 32 + j]).sum();
        }
    }
    (y, x.iter().zip(w).map(|(a, b)| a - b).collect())
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(p, q)| (p - q).abs() <= 2e-2 * (1.0 + q.abs()))
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits())
}

#[test]
fn rule_4_slots_bind_alphabetically_on_ane_sim() {
    for two in [false, true] {
        let p = asymmetric(two);
        for dev in ["cpu", "ane-sim"] {
            let d = ane_runtime::open(dev).unwrap();
            let k = d.compile(&p, &Weights::new()).unwrap();
            let s: Vec<Surface> = (0..6)
                .map(|_| d.surface(&SHAPE, DType::Fp16).unwrap())
                .collect();
            let (xs, ws, ys, bs, ys2, bs2) = (&s[0], &s[1], &s[2], &s[3], &s[4], &s[5]);
            let x = fill(xs, 1);
            let w = fill(ws, 2);
            let (want_y, want_b) = reference(&x, &w);
            let (swap_y, swap_b) = reference(&w, &x);
            let outs = |a: &Surface, b: &Surface| -> Vec<(&'static str, Surface)> {
                let mut v = vec![("y", a.clone())];
                if two {
                    v.push(("B", b.clone()));
                }
                v
            };
            let named = |ins: [(&str, &Surface); 2], o: &[(&'static str, Surface)]| {
                let o: Vec<(&str, &Surface)> = o.iter().map(|(n, s)| (*n, s)).collect();
                k.bind(&ins, &o).unwrap().eval().unwrap();
            };

            // By name: correct on both devices.
            named([("x", xs), ("W", ws)], &outs(ys, bs));
            assert!(close(&ys.read_f32().unwrap(), &want_y), "{dev} by name");
            if two {
                assert!(close(&bs.read_f32().unwrap(), &want_b), "{dev} by name");
            }
            // The same with the inputs swapped, for comparison.
            named([("x", ws), ("W", xs)], &outs(ys2, bs2));
            assert!(close(&ys2.read_f32().unwrap(), &swap_y));

            // By slot in declaration order (upstream's assumption).
            let slots: Vec<&Surface> = if two { vec![ys, bs] } else { vec![ys] };
            k.bind_slots(&[xs, ws], &slots).unwrap().eval().unwrap();
            let got_y = ys.read_f32().unwrap();
            if dev == "cpu" {
                assert!(close(&got_y, &want_y), "cpu slots");
                if two {
                    assert!(close(&bs.read_f32().unwrap(), &want_b), "cpu slots");
                }
            } else if !two {
                // Slot 0 is `W`: exactly the result of swapping the inputs.
                assert!(same_bits(&got_y, &ys2.read_f32().unwrap()));
                assert!(!close(&got_y, &want_y));
            } else {
                // Inputs swapped, and output slot 0 is `B`, slot 1 is `y`.
                assert!(same_bits(&got_y, &bs2.read_f32().unwrap()));
                assert!(same_bits(&bs.read_f32().unwrap(), &ys2.read_f32().unwrap()));
                assert!(close(&got_y, &swap_b));
            }
        }
    }
}

/// `y = x + c` over `[1, 32, 1, 32]` with input named `input`.
fn add_const(input: &str, c: f32, dtype: DType) -> Program {
    let mut f = FunctionBuilder::new("main");
    let x = f.input(input, TensorType::new(dtype, SHAPE)).unwrap();
    let lit = if dtype == DType::Fp16 {
        Literal::fp16(c)
    } else {
        Literal::fp32(c)
    };
    let y = f.add("y", x, lit).unwrap();
    program(f, &[y])
}

#[test]
fn feed_from_aliases_same_shape_and_dtype() {
    for dev in ["cpu", "ane-sim"] {
        let d = ane_runtime::open(dev).unwrap();
        let ka = d
            .compile(&add_const("x", 1.0, DType::Fp16), &Weights::new())
            .unwrap();
        let kb = d
            .compile(&add_const("u", 2.0, DType::Fp16), &Weights::new())
            .unwrap();
        let s: Vec<Surface> = (0..4)
            .map(|_| d.surface(&SHAPE, DType::Fp16).unwrap())
            .collect();
        let a = ka.bind(&[("x", &s[0])], &[("y", &s[1])]).unwrap();
        let mut b = kb.bind(&[("u", &s[2])], &[("y", &s[3])]).unwrap();
        assert_eq!(b.feed_from("u", &a, "y").unwrap(), Feed::Aliased);
        assert!(b.input("u").unwrap().same_memory(a.output("y").unwrap()));
        for round in 0..3 {
            let v = round as f32 * 0.5;
            s[0].write_f32(&vec![v; s[0].elements()]).unwrap();
            a.eval().unwrap();
            b.eval().unwrap();
            let out = s[3].read_f32().unwrap();
            assert!(
                out.iter().all(|&o| o == v + 3.0),
                "{dev} round {round}: {}",
                out[0]
            );
        }
        // Feeding into a name the kernel does not have is an error.
        assert!(matches!(
            b.feed_from("nope", &a, "y"),
            Err(Error::Binding(_))
        ));
        assert!(matches!(
            b.feed_from("u", &a, "nope"),
            Err(Error::Binding(_))
        ));
    }
}

#[test]
fn feed_from_copies_when_dtypes_differ() {
    let d = ane_runtime::open("cpu").unwrap();
    let ka = d
        .compile(&add_const("x", 1.0, DType::Fp16), &Weights::new())
        .unwrap();
    let kb = d
        .compile(&add_const("u", 2.0, DType::Fp32), &Weights::new())
        .unwrap();
    let (x, y) = (
        d.surface(&SHAPE, DType::Fp16).unwrap(),
        d.surface(&SHAPE, DType::Fp16).unwrap(),
    );
    let (u, z) = (
        d.surface(&SHAPE, DType::Fp32).unwrap(),
        d.surface(&SHAPE, DType::Fp32).unwrap(),
    );
    let a = ka.bind(&[("x", &x)], &[("y", &y)]).unwrap();
    let mut b = kb.bind(&[("u", &u)], &[("y", &z)]).unwrap();
    x.write_f32(&vec![0.1; 1024]).unwrap();
    a.eval().unwrap();
    assert_eq!(b.feed_from("u", &a, "y").unwrap(), Feed::Copied);
    assert!(!b.input("u").unwrap().same_memory(&y));
    b.eval().unwrap();
    let want = r16(r16(0.1) + 1.0) + 2.0;
    assert!(z.read_f32().unwrap().iter().all(|&v| v == want));
    // A copy is a snapshot: a later eval of `a` is not seen until fed again.
    x.write_f32(&vec![5.0; 1024]).unwrap();
    a.eval().unwrap();
    b.eval().unwrap();
    assert!(z.read_f32().unwrap().iter().all(|&v| v == want));
    b.feed_from("u", &a, "y").unwrap();
    b.eval().unwrap();
    assert!(z.read_f32().unwrap().iter().all(|&v| v == 8.0));
}

#[test]
fn binding_errors() {
    let p = asymmetric(true);
    for dev in ["cpu", "ane-sim"] {
        let d = ane_runtime::open(dev).unwrap();
        let k = d.compile(&p, &Weights::new()).unwrap();
        let s: Vec<Surface> = (0..4)
            .map(|_| d.surface(&SHAPE, DType::Fp16).unwrap())
            .collect();
        let outs = [("y", &s[2]), ("B", &s[3])];
        let msg = |r: ane_runtime::Result<ane_runtime::Binding>| match r {
            Err(Error::Binding(m)) => m,
            other => panic!("{dev}: expected a binding error, got {other:?}"),
        };
        let m = msg(k.bind(&[("x", &s[0]), ("w", &s[1])], &outs));
        assert!(m.contains("no input `w`") && m.contains("W"), "{m}");
        let m = msg(k.bind(&[("x", &s[0])], &outs));
        assert!(m.contains("`W` is not bound"), "{m}");
        let m = msg(k.bind(&[("x", &s[0]), ("W", &s[1])], &outs[..1]));
        assert!(m.contains("`B` is not bound"), "{m}");
        let m = msg(k.bind(&[("x", &s[0]), ("x", &s[0]), ("W", &s[1])], &outs));
        assert!(m.contains("given twice"), "{m}");
        let wrong = d.surface(&[1, 32, 2, 16], DType::Fp16).unwrap();
        let m = msg(k.bind(&[("x", &wrong), ("W", &s[1])], &outs));
        assert!(
            m.contains("declared") && m.contains("[1, 32, 2, 16]"),
            "{m}"
        );
        let m = msg(k.bind(&[("x", &s[0]), ("W", &s[1])], &[("y", &s[0]), ("B", &s[3])]));
        assert!(m.contains("both an input and an output"), "{m}");
        let m = msg(k.bind_slots(&[&s[0]], &[&s[2], &s[3]]));
        assert!(m.contains("2 inputs, 1 surfaces"), "{m}");
    }
    // Wrong dtype: ane-sim refuses to make fp32 surfaces, and refuses to bind one made by cpu.
    let sim = ane_runtime::open("ane-sim").unwrap();
    assert!(sim.surface(&SHAPE, DType::Fp32).is_err());
    let k = sim.compile(&p, &Weights::new()).unwrap();
    let cpu = ane_runtime::open("cpu").unwrap();
    let f32s = cpu.surface_with_alloc(&SHAPE, DType::Fp32, 49_152).unwrap();
    let s: Vec<Surface> = (0..3)
        .map(|_| sim.surface(&SHAPE, DType::Fp16).unwrap())
        .collect();
    match k.bind(&[("x", &f32s), ("W", &s[0])], &[("y", &s[1]), ("B", &s[2])]) {
        Err(Error::Binding(m)) => assert!(m.contains("fp32") && m.contains("ane-sim"), "{m}"),
        other => panic!("expected a dtype error, got {other:?}"),
    }
}

#[test]
fn surface_guards_block_eval() {
    for dev in ["cpu", "ane-sim"] {
        let d = ane_runtime::open(dev).unwrap();
        let k = d
            .compile(&add_const("x", 1.0, DType::Fp16), &Weights::new())
            .unwrap();
        let (x, y) = (
            d.surface(&SHAPE, DType::Fp16).unwrap(),
            d.surface(&SHAPE, DType::Fp16).unwrap(),
        );
        let b = k.bind(&[("x", &x)], &[("y", &y)]).unwrap();
        {
            let mut g = x.write::<f16>().unwrap();
            g[0] = f16::from_f32(3.0);
            assert!(matches!(b.eval(), Err(Error::SurfaceBusy(_))));
            assert!(matches!(x.read::<f16>(), Err(Error::SurfaceBusy(_))));
            assert!(matches!(x.write_f32(&[1.0]), Err(Error::SurfaceBusy(_))));
        }
        // Read guards coexist with each other and with eval reading the input.
        {
            let r1 = x.read::<f16>().unwrap();
            let r2 = x.read::<f16>().unwrap();
            assert_eq!(r1[0], r2[0]);
            b.eval().unwrap();
            assert!(matches!(x.write::<f16>(), Err(Error::SurfaceBusy(_))));
        }
        // A reader of the output blocks eval (it would write under the reader).
        {
            let _r = y.read::<f16>().unwrap();
            assert!(matches!(b.eval(), Err(Error::SurfaceBusy(_))));
        }
        // Nothing stays locked after a failed eval.
        b.eval().unwrap();
        assert_eq!(y.read_f32().unwrap()[0], 4.0);
        x.write::<f16>().unwrap();
        assert!(matches!(x.read::<f32>(), Err(Error::SurfaceDType { .. })));
    }
}

#[test]
fn write_and_read_f32_round_fp16() {
    let d = ane_runtime::open("cpu").unwrap();
    let s = d.surface(&[1, 2, 1, 32], DType::Fp16).unwrap();
    let v = [0.1f32, 1.0 / 3.0, 65504.0, 1e-8, -2.5, 70000.0];
    s.write_f32(&v).unwrap();
    let back = s.read_f32().unwrap();
    for (i, &x) in v.iter().enumerate() {
        assert_eq!(back[i], r16(x), "{x}");
    }
    assert_eq!(back[0], 0.099975586);
    assert!(back[5].is_infinite());
    s.write_f32_at(60, &[7.0, 8.0, 9.0, 10.0]).unwrap();
    let mut tail = [0f32; 4];
    s.read_f32_into(60, &mut tail).unwrap();
    assert_eq!(tail, [7.0, 8.0, 9.0, 10.0]);
    assert!(s.write_f32_at(62, &[1.0; 3]).is_err());
    let f = d.surface(&[1, 2, 1, 32], DType::Fp32).unwrap();
    f.write_f32(&v).unwrap();
    assert_eq!(&f.read_f32().unwrap()[..6], &v);
}

#[test]
fn copy_channels_between_and_within_surfaces() {
    let d = ane_runtime::open("cpu").unwrap();
    for dtype in [DType::Fp16, DType::Fp32] {
        let a = d.surface(&[1, 8, 1, 32], dtype).unwrap();
        let b = d.surface(&[1, 4, 1, 32], dtype).unwrap();
        let va: Vec<f32> = (0..256).map(|i| i as f32).collect();
        a.write_f32(&va).unwrap();
        b.copy_channels_from(1, &a, 5, 3).unwrap();
        let vb = b.read_f32().unwrap();
        assert!(vb[..32].iter().all(|&v| v == 0.0));
        assert_eq!(&vb[32..], &va[5 * 32..8 * 32]);
        // Overlapping ranges on one surface behave like memmove, both directions.
        a.copy_channels_from(2, &a, 0, 5).unwrap();
        let mut want = va.clone();
        want.copy_within(0..5 * 32, 2 * 32);
        assert_eq!(a.read_f32().unwrap(), want);
        a.copy_channels_from(0, &a, 3, 5).unwrap();
        want.copy_within(3 * 32..8 * 32, 0);
        assert_eq!(a.read_f32().unwrap(), want);
        // A clone is the same surface.
        a.copy_channels_from(7, &a.clone(), 0, 1).unwrap();
        want.copy_within(0..32, 7 * 32);
        assert_eq!(a.read_f32().unwrap(), want);
        assert!(b.copy_channels_from(2, &a, 0, 3).is_err());
        assert!(a.copy_channels_from(0, &a, 6, 3).is_err());
        let c = d.surface(&[1, 4, 1, 16], dtype).unwrap();
        assert!(c.copy_channels_from(0, &a, 0, 1).is_err());
    }
}

/// `y = x · w` with `w` a BLOBFILE constant `[1, 32, 1, 1]` at `path`/`offset`.
fn blob_program(path: &str, offset: u64) -> Program {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&SHAPE)).unwrap();
    let w = f
        .blob_constant("w", fp16(&[1, 32, 1, 1]), path, offset)
        .unwrap();
    let y = f.mul("y", x, w).unwrap();
    program(f, &[y])
}

#[test]
fn weight_file_errors_are_clear_at_compile_time() {
    let d = ane_runtime::open("ane-sim").unwrap();
    let good = ane_mil::blob::single_f32_as_f16(&[0.5; 32]);
    let path = "@model_path/weights/w.bin";
    // Works when present.
    let mut w = Weights::new();
    w.insert(path, good.clone());
    d.compile(&blob_program(path, 64), &w).unwrap();
    // Missing file.
    match d.compile(&blob_program(path, 64), &Weights::new()) {
        Err(Error::Weights { path: p, detail }) => {
            assert_eq!(p, path);
            assert!(detail.contains("no such weight file"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // Missing file under a directory.
    let dir = std::env::temp_dir().join(format!("ane-binding-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("weights")).unwrap();
    std::fs::write(dir.join("weights/w.bin"), &good).unwrap();
    let wd = Weights::from_dir(&dir);
    d.compile(&blob_program(path, 64), &wd).unwrap();
    match d.compile(&blob_program("@model_path/weights/none.bin", 64), &wd) {
        Err(e @ Error::Weights { .. }) => assert!(e.to_string().contains("cannot read"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A path that leaves the model directory.
    for bad in [
        "@model_path/../w.bin",
        "@model_path/weights/../../etc/passwd",
        "/etc/passwd",
    ] {
        match d.compile(&blob_program(bad, 64), &wd) {
            Err(e @ Error::Weights { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("model directory") || m.contains("must start"),
                    "{m}"
                )
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // A corrupt file.
    let mut corrupt = good.clone();
    corrupt[64..68].copy_from_slice(&[1, 2, 3, 4]);
    let mut w = Weights::new();
    w.insert(path, corrupt);
    match d.compile(&blob_program(path, 64), &w) {
        Err(e @ Error::Blob { .. }) => assert!(e.to_string().contains(path), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut w = Weights::new();
    w.insert(path, vec![0u8; 10]);
    assert!(matches!(
        d.compile(&blob_program(path, 64), &w),
        Err(Error::Blob { .. })
    ));
    // An offset that points at the payload (128), not at the metadata record (rule 14).
    let mut w = Weights::new();
    w.insert(path, good.clone());
    match d.compile(&blob_program(path, 128), &w) {
        Err(e @ Error::Blob { .. }) => {
            let m = e.to_string();
            assert!(m.contains("128") && m.contains("64"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Wrong element count for the declared type.
    let mut w = Weights::new();
    w.insert(path, ane_mil::blob::single_f32_as_f16(&[0.5; 31]));
    assert!(matches!(
        d.compile(&blob_program(path, 64), &w),
        Err(Error::Blob { .. })
    ));
    // An int8 blob where fp16 is declared.
    let mut bw = BlobWriter::new();
    bw.add_i8(&[1; 32]);
    let mut w = Weights::new();
    w.insert(path, bw.finish());
    assert!(matches!(
        d.compile(&blob_program(path, 64), &w),
        Err(Error::Blob { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn duplicate_returns_are_rejected_clearly() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&SHAPE)).unwrap();
    let y = f.unary("y", Op::Exp, x).unwrap();
    let p = program(f, &[y, y]);
    let d = ane_runtime::open("cpu").unwrap();
    match d.compile(&p, &Weights::new()) {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("twice"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cpu_surfaces_are_pooled_by_size_and_come_back_zeroed() {
    use ane_runtime::cpu::CpuDevice;
    use ane_runtime::{Device, Fidelity};
    let dev = CpuDevice::new(Fidelity::Exact);
    let a = dev.surface(&[1, 64, 1, 64], ane_mil::DType::Fp32).unwrap();
    a.write_f32(&vec![3.0; 64 * 64]).unwrap();
    drop(a);
    let b = dev.surface(&[1, 64, 1, 64], ane_mil::DType::Fp32).unwrap();
    assert!(
        b.read_f32().unwrap().iter().all(|&v| v == 0.0),
        "a reused surface is zeroed"
    );
    let _c = dev.surface(&[1, 32, 1, 64], ane_mil::DType::Fp32).unwrap();
    let stats = dev.pool_stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}
