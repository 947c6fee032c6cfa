//! Every MIL op the CPU executor runs, checked against naive f64 references on random data:
//! on `cpu` with fp32 surfaces (~1e-5 relative) and on `ane-sim` with fp16 surfaces (inputs
//! rounded to fp16 for the reference; fp16-sized tolerances).

mod common;

use ane_mil::blob::BlobWriter;
use ane_mil::builder::{BuildArg, FunctionBuilder, Var};
use ane_mil::{DType, Dialect, Literal, Op, Program, TensorData, TensorType};
use ane_runtime::Weights;
use common::{assert_close, bshape, r16, run, zip, Dev, Rng, Tol, T};

/// Ops exercised by the tests below (checked against `Op::ALL`).
const COVERED: &[Op] = &[
    Op::Const,
    Op::Conv,
    Op::Matmul,
    Op::Softmax,
    Op::SliceBySize,
    Op::Reshape,
    Op::Transpose,
    Op::Concat,
    Op::ReduceSum,
    Op::ReduceMax,
    Op::Pow,
    Op::Mul,
    Op::Add,
    Op::Sub,
    Op::RealDiv,
    Op::Maximum,
    Op::Sigmoid,
    Op::Silu,
    Op::Exp,
    Op::Log,
    Op::Rsqrt,
    Op::Select,
    Op::Cast,
    Op::ScaledDotProductAttention,
    Op::ConstexprAffineDequantize,
    Op::Quantize,
    Op::Dequantize,
];

#[test]
fn every_op_is_covered() {
    for op in Op::ALL {
        assert!(COVERED.contains(op), "no test covers `{op}`");
    }
}

fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A function under construction for `dev`, with weights.
struct Ctx {
    dev: Dev,
    f: FunctionBuilder,
    w: Weights,
    rng: Rng,
}

impl Ctx {
    fn new(dev: Dev, name: &str) -> Ctx {
        Ctx {
            dev,
            f: FunctionBuilder::new("main"),
            w: Weights::new(),
            rng: Rng::new(seed_of(name) ^ 0x5eed),
        }
    }

    fn ty(&self, shape: &[usize]) -> TensorType {
        TensorType::new(self.dev.dtype(), shape.to_vec())
    }

    fn input(&mut self, name: &str, shape: &[usize]) -> Var {
        let ty = self.ty(shape);
        self.f.input(name, ty).unwrap()
    }

    /// A BLOBFILE constant of the device dtype with random values in `[lo, hi)`; returns the
    /// variable and the values as the device sees them.
    fn blob(&mut self, name: &str, shape: &[usize], lo: f32, hi: f32) -> (Var, T) {
        let n: usize = shape.iter().product();
        let vals = self.rng.vec(n, lo, hi);
        let mut bw = BlobWriter::new();
        let offset = match self.dev {
            Dev::Cpu => bw.add_f32(&vals),
            Dev::Sim => bw.add_f32_as_f16(&vals),
        };
        let path = format!("@model_path/weights/{name}.bin");
        self.w.insert(path.clone(), bw.finish());
        let ty = self.ty(shape);
        let v = self.f.blob_constant(name, ty, &path, offset).unwrap();
        let q: Vec<f32> = vals.iter().map(|&x| self.dev.q(x)).collect();
        (v, T::new(shape, &q))
    }

    /// A rank-1 inline constant of the device dtype.
    fn vec_lit(&mut self, vals: &[f32]) -> (Literal, T) {
        let ty = TensorType::new(self.dev.dtype(), [vals.len()]);
        let data = match self.dev {
            Dev::Cpu => TensorData::Fp32(vals.to_vec()),
            Dev::Sim => TensorData::Fp16(vals.iter().map(|&x| half::f16::from_f32(x)).collect()),
        };
        let q: Vec<f32> = vals.iter().map(|&x| self.dev.q(x)).collect();
        (Literal::Value { ty, data }, T::new(&[vals.len()], &q))
    }

    fn lit(&self, v: f32) -> Literal {
        self.dev.lit(v)
    }

    /// Reshapes `v` to `[n/32, 32]` so it can be a kernel output on ane-sim.
    fn out32(&mut self, name: &str, v: Var) -> Var {
        let n: usize = self.f.ty(v).unwrap().shape.iter().product();
        assert_eq!(n % 32, 0, "{name}: {n} elements");
        self.f.reshape(name, v, &[(n / 32) as i32, 32]).unwrap()
    }

    fn finish(self, outs: &[Var]) -> (Program, Weights) {
        (
            Program::new(Dialect::Ios18, self.f.finish(outs).unwrap()),
            self.w,
        )
    }
}

/// Builds the program for each device, runs it on random inputs in `[lo, hi)` and compares
/// each output with `reference(dev, inputs)` within `Tol::of(dev).times(k)`.
fn check(
    name: &str,
    devs: &[Dev],
    (lo, hi): (f32, f32),
    k: f64,
    build: impl Fn(&mut Ctx) -> Vec<Var>,
    reference: impl Fn(Dev, &[T], &Consts) -> Vec<T>,
) {
    for &dev in devs {
        RECORD.with(|r| r.borrow_mut().clear());
        let mut cx = Ctx::new(dev, name);
        let outs = build(&mut cx);
        let consts = Consts(RECORD.with(|r| r.take()));
        let (program, weights) = cx.finish(&outs);
        let params = program.main().unwrap().params.clone();
        let mut rng = Rng::new(seed_of(name));
        let mut inputs = Vec::new();
        let mut refs = Vec::new();
        for p in &params {
            let n: usize = p.ty.shape.iter().product();
            let v: Vec<f32> = rng.vec(n, lo, hi).iter().map(|&x| dev.q(x)).collect();
            refs.push(T::new(&p.ty.shape, &v));
            inputs.push(v);
        }
        let got = run(dev, &program, &weights, &inputs);
        let want = reference(dev, &refs, &consts);
        assert_eq!(got.len(), want.len(), "{name}: output count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(
                &format!("{name} on {} output {i}", dev.name()),
                g,
                w,
                Tol::of(dev).times(k),
            );
        }
    }
}

/// Constants (BLOBFILE or vector literals) a build drew, in order, as the device sees them.
struct Consts(Vec<T>);

impl Consts {
    fn get(&self, i: usize) -> &T {
        &self.0[i]
    }
}

thread_local! {
    static RECORD: std::cell::RefCell<Vec<T>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a constant for the reference.
fn rec(t: &T) {
    RECORD.with(|r| r.borrow_mut().push(t.clone()));
}

impl Ctx {
    fn blob_rec(&mut self, name: &str, shape: &[usize], lo: f32, hi: f32) -> Var {
        let (v, t) = self.blob(name, shape, lo, hi);
        rec(&t);
        v
    }

    fn vec_rec(&mut self, vals: &[f32]) -> Literal {
        let (l, t) = self.vec_lit(vals);
        rec(&t);
        l
    }
}

// ---------------------------------------------------------------- references

/// Naive conv: x `[N,IC,H,W]`, w `[OC,IC/g,KH,KW]`, pads `[t,l]`.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &T,
    w: &T,
    bias: Option<&T>,
    stride: [usize; 2],
    dil: [usize; 2],
    pad: [usize; 2],
    groups: usize,
    out_hw: [usize; 2],
) -> T {
    let (n, ic, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oc, icg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    assert_eq!(icg * groups, ic);
    let ocg = oc / groups;
    T::from_fn(&[n, oc, out_hw[0], out_hw[1]], |i| {
        let (b, o, y, xo) = (i[0], i[1], i[2], i[3]);
        let g = o / ocg;
        let mut acc = bias.map_or(0.0, |bv| bv.at(&[o]));
        for c in 0..icg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy = (y * stride[0] + ky * dil[0]) as i64 - pad[0] as i64;
                    let ix = (xo * stride[1] + kx * dil[1]) as i64 - pad[1] as i64;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                        acc += w.at(&[o, c, ky, kx])
                            * x.at(&[b, g * icg + c, iy as usize, ix as usize]);
                    }
                }
            }
        }
        acc
    })
}

/// Naive batched matmul with optional transposes and broadcast batch dims.
fn matmul_ref(x: &T, y: &T, tx: bool, ty: bool) -> T {
    let xt = if tx { swap_last(x) } else { x.clone() };
    let yt = if ty { swap_last(y) } else { y.clone() };
    let (xr, yr) = (xt.shape.len(), yt.shape.len());
    let (m, k, n) = (xt.shape[xr - 2], xt.shape[xr - 1], yt.shape[yr - 1]);
    assert_eq!(k, yt.shape[yr - 2]);
    let batch = bshape(&xt.shape[..xr - 2], &yt.shape[..yr - 2]);
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let bx = xt.shape[..xr - 2].to_vec();
    let by = yt.shape[..yr - 2].to_vec();
    T::from_fn(&shape, |i| {
        let nb = batch.len();
        let pick = |own: &[usize]| -> Vec<usize> {
            let lead = nb - own.len();
            own.iter()
                .enumerate()
                .map(|(d, &s)| if s == 1 { 0 } else { i[lead + d] })
                .collect()
        };
        let (mut ix, mut iy) = (pick(&bx), pick(&by));
        let (r, c) = (i[nb], i[nb + 1]);
        let mut acc = 0.0;
        for kk in 0..k {
            ix.extend([r, kk]);
            iy.extend([kk, c]);
            acc += xt.at(&ix) * yt.at(&iy);
            ix.truncate(ix.len() - 2);
            iy.truncate(iy.len() - 2);
        }
        acc
    })
}

fn swap_last(t: &T) -> T {
    let r = t.shape.len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 1, r - 2);
    t.transpose(&perm)
}

fn softmax_ref(x: &T, axis: usize) -> T {
    let mut stat_shape = x.shape.clone();
    stat_shape[axis] = 1;
    // (max, Σ e^(x - max)) along the axis, for each position of the other dims.
    let stats = |i: &[usize]| {
        let mut j = i.to_vec();
        let mut m = f64::NEG_INFINITY;
        for a in 0..x.shape[axis] {
            j[axis] = a;
            m = m.max(x.at(&j));
        }
        let mut s = 0.0;
        for a in 0..x.shape[axis] {
            j[axis] = a;
            s += (x.at(&j) - m).exp();
        }
        (m, s)
    };
    let maxes = T::from_fn(&stat_shape, |i| stats(i).0);
    let sums = T::from_fn(&stat_shape, |i| stats(i).1);
    T::from_fn(&x.shape, |i| {
        let mut j = i.to_vec();
        j[axis] = 0;
        (x.at(i) - maxes.at(&j)).exp() / sums.at(&j)
    })
}

fn reduce_ref(x: &T, axes: &[usize], keep: bool, max: bool) -> T {
    let kept: Vec<usize> = (0..x.shape.len())
        .map(|d| if axes.contains(&d) { 1 } else { x.shape[d] })
        .collect();
    let r = T::from_fn(&kept, |i| {
        let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
        let red: Vec<usize> = axes.iter().map(|&a| x.shape[a]).collect();
        let total: usize = red.iter().product();
        for flat in 0..total {
            let mut j = i.to_vec();
            let mut rem = flat;
            for (k, &a) in axes.iter().enumerate().rev() {
                j[a] = rem % red[k];
                rem /= red[k];
            }
            let v = x.at(&j);
            acc = if max { acc.max(v) } else { acc + v };
        }
        acc
    });
    if keep {
        r
    } else {
        let shape: Vec<usize> = (0..x.shape.len())
            .filter(|d| !axes.contains(d))
            .map(|d| x.shape[d])
            .collect();
        r.reshape(&shape)
    }
}

fn slice_ref(x: &T, begin: &[usize], size: &[usize]) -> T {
    T::from_fn(size, |i| {
        let j: Vec<usize> = i.iter().zip(begin).map(|(a, b)| a + b).collect();
        x.at(&j)
    })
}

fn concat_ref(vals: &[&T], axis: usize, interleave: bool) -> T {
    let mut shape = vals[0].shape.clone();
    shape[axis] = vals.iter().map(|v| v.shape[axis]).sum();
    T::from_fn(&shape, |i| {
        let mut j = i.to_vec();
        if interleave {
            let k = vals.len();
            j[axis] = i[axis] / k;
            vals[i[axis] % k].at(&j)
        } else {
            let mut a = i[axis];
            for v in vals {
                if a < v.shape[axis] {
                    j[axis] = a;
                    return v.at(&j);
                }
                a -= v.shape[axis];
            }
            unreachable!()
        }
    })
}

/// Attention over the last two dims of `[B.., L, E]` tensors with an optional additive mask
/// broadcast to `[B.., L, S]`.
fn sdpa_ref(q: &T, k: &T, v: &T, mask: Option<&T>) -> T {
    let scores = matmul_ref(q, k, false, true);
    let e = *q.shape.last().unwrap() as f64;
    let mut scaled = scores.map(|x| x / e.sqrt());
    if let Some(m) = mask {
        scaled = zip(&scaled, m, |a, b| a + b);
    }
    let probs = softmax_ref(&scaled, scaled.shape.len() - 1);
    matmul_ref(&probs, v, false, false)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

// ---------------------------------------------------------------- conv

#[test]
fn conv_1x1_linear_with_bias_and_batch() {
    check(
        "conv1x1",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 64, 1, 32]);
            let w = cx.blob_rec("w", &[48, 64, 1, 1], -0.2, 0.2);
            let bias: Vec<f32> = cx.rng.vec(48, -1.0, 1.0);
            let bl = cx.vec_rec(&bias);
            let y =
                cx.f.op(
                    "y",
                    Op::Conv,
                    vec![("weight", w.into()), ("x", x.into()), ("bias", bl.into())],
                )
                .unwrap();
            // Plain linear (no bias, all options explicit) on the same input.
            let z = cx.f.conv("z", x, w, 1).unwrap();
            vec![y, z]
        },
        |_, i, c| {
            let (w, b) = (c.get(0), c.get(1));
            vec![
                conv_ref(&i[0], w, Some(b), [1, 1], [1, 1], [0, 0], 1, [1, 32]),
                conv_ref(&i[0], w, None, [1, 1], [1, 1], [0, 0], 1, [1, 32]),
            ]
        },
    );
}

#[test]
fn conv_1x1_on_a_channel_slice() {
    check(
        "conv1x1_slice",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 80, 1, 32]);
            let s =
                cx.f.slice_by_size("s", x, &[0, 16, 0, 0], &[1, 64, 1, 32])
                    .unwrap();
            let w = cx.blob_rec("w", &[32, 64, 1, 1], -0.2, 0.2);
            vec![cx.f.conv("y", s, w, 1).unwrap()]
        },
        |_, i, c| {
            let s = slice_ref(&i[0], &[0, 16, 0, 0], &[1, 64, 1, 32]);
            vec![conv_ref(
                &s,
                c.get(0),
                None,
                [1, 1],
                [1, 1],
                [0, 0],
                1,
                [1, 32],
            )]
        },
    );
}

#[allow(clippy::too_many_arguments)]
fn conv_op(
    cx: &mut Ctx,
    x: Var,
    w: Var,
    bias: Option<Literal>,
    pad_type: &str,
    pad: [i32; 4],
    stride: [i32; 2],
    dil: [i32; 2],
    groups: i32,
) -> Var {
    let mut args: Vec<(&str, BuildArg)> = vec![
        ("dilations", Literal::int32s(&dil).into()),
        ("groups", Literal::int32(groups).into()),
        ("pad", Literal::int32s(&pad).into()),
        ("pad_type", Literal::string(pad_type).into()),
        ("strides", Literal::int32s(&stride).into()),
        ("weight", w.into()),
        ("x", x.into()),
    ];
    if let Some(b) = bias {
        args.push(("bias", b.into()));
    }
    cx.f.op("c", Op::Conv, args).unwrap()
}

#[test]
fn conv_custom_pad_stride_dilation_groups_bias() {
    check(
        "conv_custom",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 4, 7, 32]);
            let w = cx.blob_rec("w", &[8, 2, 3, 3], -0.5, 0.5);
            let b: Vec<f32> = cx.rng.vec(8, -1.0, 1.0);
            let bl = cx.vec_rec(&b);
            let c = conv_op(
                cx,
                x,
                w,
                Some(bl),
                "custom",
                [1, 2, 1, 2],
                [2, 1],
                [1, 2],
                2,
            );
            assert_eq!(cx.f.ty(c).unwrap().shape, vec![1, 8, 4, 31]);
            vec![cx.out32("y", c)]
        },
        |_, i, c| {
            let r = conv_ref(
                &i[0],
                c.get(0),
                Some(c.get(1)),
                [2, 1],
                [1, 2],
                [1, 1],
                2,
                [4, 31],
            );
            vec![r.reshape(&[31, 32])]
        },
    );
}

#[test]
fn conv_same_padding_strided_and_even_kernel() {
    check(
        "conv_same_s2",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 4, 8, 32]);
            let w = cx.blob_rec("w", &[8, 4, 3, 3], -0.5, 0.5);
            let c = conv_op(cx, x, w, None, "same", [0; 4], [2, 2], [1, 1], 1);
            assert_eq!(cx.f.ty(c).unwrap().shape, vec![1, 8, 4, 16]);
            vec![cx.out32("y", c)]
        },
        |_, i, c| {
            // total pad H: (4-1)·2+3-8 = 1, W: (16-1)·2+3-32 = 1 → before = 0.
            let r = conv_ref(&i[0], c.get(0), None, [2, 2], [1, 1], [0, 0], 1, [4, 16]);
            vec![r.reshape(&[16, 32])]
        },
    );
    check(
        "conv_same_k4",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 4, 7, 32]);
            let w = cx.blob_rec("w", &[8, 4, 4, 4], -0.5, 0.5);
            let c = conv_op(cx, x, w, None, "same", [0; 4], [1, 1], [1, 1], 1);
            assert_eq!(cx.f.ty(c).unwrap().shape, vec![1, 8, 7, 32]);
            vec![cx.out32("y", c)]
        },
        |_, i, c| {
            // total pad 3 on each axis: 1 before, 2 after.
            let r = conv_ref(&i[0], c.get(0), None, [1, 1], [1, 1], [1, 1], 1, [7, 32]);
            vec![r.reshape(&[56, 32])]
        },
    );
}

#[test]
fn conv_depthwise_dilated_valid() {
    check(
        "conv_dw",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 4, 6, 32]);
            let w = cx.blob_rec("w", &[8, 1, 2, 3], -0.5, 0.5);
            let c = conv_op(cx, x, w, None, "valid", [0; 4], [1, 1], [2, 2], 4);
            assert_eq!(cx.f.ty(c).unwrap().shape, vec![2, 8, 4, 28]);
            vec![cx.out32("y", c)]
        },
        |_, i, c| {
            let r = conv_ref(&i[0], c.get(0), None, [1, 1], [2, 2], [0, 0], 4, [4, 28]);
            vec![r.reshape(&[56, 32])]
        },
    );
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_rank2() {
    check(
        "mm2",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[32, 48]);
            let y = cx.input("y", &[48, 32]);
            vec![cx.f.matmul("z", x, y, false, false).unwrap()]
        },
        |_, i, _| vec![matmul_ref(&i[0], &i[1], false, false)],
    );
}

#[test]
fn matmul_rank3_both_transposed() {
    check(
        "mm3t",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 48, 32]);
            let y = cx.input("y", &[2, 64, 48]);
            let a = cx.f.matmul("a", x, y, true, true).unwrap();
            let b = cx.f.matmul("b", y, x, false, false).unwrap();
            vec![a, b]
        },
        |_, i, _| {
            vec![
                matmul_ref(&i[0], &i[1], true, true),
                matmul_ref(&i[1], &i[0], false, false),
            ]
        },
    );
}

#[test]
fn matmul_rank4_broadcast_batches() {
    check(
        "mm4b",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 1, 16, 32]);
            let y = cx.input("y", &[3, 32, 48]);
            let w = cx.input("w", &[32, 32]);
            let a = cx.f.matmul("a", x, y, false, false).unwrap();
            let b = cx.f.matmul("b", x, w, false, true).unwrap();
            let c = cx.f.matmul("c", y, w, true, false).unwrap();
            vec![a, b, c]
        },
        |_, i, _| {
            vec![
                matmul_ref(&i[0], &i[1], false, false),
                matmul_ref(&i[0], &i[2], false, true),
                matmul_ref(&i[1], &i[2], true, false),
            ]
        },
    );
}

#[test]
fn matmul_of_transposed_and_sliced_views() {
    check(
        "mm_views",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            // The packed dynamic linear layer: [act | Wᵀ] in one input.
            let x = cx.input("x", &[1, 32, 1, 64]);
            let act =
                cx.f.slice_by_size("act", x, &[0, 0, 0, 0], &[1, 32, 1, 32])
                    .unwrap();
            let wt =
                cx.f.slice_by_size("wt", x, &[0, 0, 0, 32], &[1, 32, 1, 32])
                    .unwrap();
            let a2 = cx.f.reshape("a2", act, &[1, 1, 32, 32]).unwrap();
            let a3 = cx.f.transpose("a3", a2, &[0, 1, 3, 2]).unwrap();
            let w = cx.f.reshape("w", wt, &[1, 1, 32, 32]).unwrap();
            let yh = cx.f.matmul("yh", a3, w, false, false).unwrap();
            let yt = cx.f.transpose("yt", yh, &[0, 1, 3, 2]).unwrap();
            let y = cx.f.reshape("y", yt, &[1, 32, 1, 32]).unwrap();
            vec![y]
        },
        |_, i, _| {
            let x = &i[0];
            let act = slice_ref(x, &[0, 0, 0, 0], &[1, 32, 1, 32]).reshape(&[32, 32]);
            let wt = slice_ref(x, &[0, 0, 0, 32], &[1, 32, 1, 32]).reshape(&[32, 32]);
            let y = T::from_fn(&[32, 32], |ix| {
                (0..32)
                    .map(|c| act.at(&[c, ix[1]]) * wt.at(&[c, ix[0]]))
                    .sum()
            });
            vec![y.reshape(&[1, 32, 1, 32])]
        },
    );
}

// ---------------------------------------------------------------- softmax, reductions

#[test]
fn softmax_last_axis_and_axis_1() {
    check(
        "softmax",
        &Dev::BOTH,
        (-4.0, 4.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 8, 32]);
            let a = cx.f.softmax("a", x, -1).unwrap();
            let b = cx.f.softmax("b", x, 1).unwrap();
            let t = cx.f.transpose("t", x, &[0, 2, 1]).unwrap();
            let c = cx.f.softmax("c", t, 1).unwrap();
            let c2 = cx.f.transpose("c2", c, &[0, 2, 1]).unwrap();
            vec![a, b, c2]
        },
        |_, i, _| {
            let x = &i[0];
            vec![softmax_ref(x, 2), softmax_ref(x, 1), softmax_ref(x, 2)]
        },
    );
}

#[test]
fn reduce_sum_and_max_axes_keep_dims() {
    check(
        "reduce",
        &Dev::BOTH,
        (-2.0, 2.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 3, 4, 32]);
            let a = cx.f.reduce_sum("a", x, &[1, 2], false).unwrap();
            let b = cx.f.reduce_max("b", x, &[-3, 0], true).unwrap();
            let c0 = cx.f.reduce_sum("c0", x, &[-1], true).unwrap();
            let c = cx.f.reshape("c", c0, &[24]).unwrap();
            let d0 = cx.f.reduce_max("d0", x, &[3, 1], false).unwrap();
            let d = cx.f.reshape("d", d0, &[8]).unwrap();
            let t = cx.f.transpose("t", x, &[3, 1, 2, 0]).unwrap();
            let e0 = cx.f.reduce_sum("e0", t, &[0], false).unwrap();
            let e = cx.f.reshape("e", e0, &[24]).unwrap();
            let cd = cx.f.concat("cd", &[c, d], 0, false).unwrap();
            let ed = cx.f.concat("ed", &[e, d], 0, false).unwrap();
            let cd = cx.f.reshape("cdr", cd, &[1, 32]).unwrap();
            let ed = cx.f.reshape("edr", ed, &[1, 32]).unwrap();
            vec![a, b, cd, ed]
        },
        |_, i, _| {
            let x = &i[0];
            let c = reduce_ref(x, &[3], true, false).reshape(&[24]);
            let d = reduce_ref(x, &[1, 3], false, true).reshape(&[8]);
            let e = reduce_ref(&x.transpose(&[3, 1, 2, 0]), &[0], false, false).reshape(&[24]);
            vec![
                reduce_ref(x, &[1, 2], false, false),
                reduce_ref(x, &[0, 1], true, true),
                concat_ref(&[&c, &d], 0, false).reshape(&[1, 32]),
                concat_ref(&[&e, &d], 0, false).reshape(&[1, 32]),
            ]
        },
    );
}

// ---------------------------------------------------------------- views

#[test]
fn slice_by_size_with_minus_one_and_elementwise_on_slices() {
    check(
        "slice",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 8, 4, 48]);
            let a =
                cx.f.slice_by_size("a", x, &[1, 2, 1, 16], &[1, -1, 2, 32])
                    .unwrap();
            let b =
                cx.f.slice_by_size("b", x, &[0, 0, 3, 0], &[2, 8, 1, 32])
                    .unwrap();
            let b2 =
                cx.f.slice_by_size("b2", x, &[0, 0, 2, 16], &[2, 8, 1, 32])
                    .unwrap();
            let l = cx.lit(2.0);
            let m = cx.f.mul("m", b, l).unwrap();
            let s = cx.f.sub("s", m, b2).unwrap();
            vec![a, s]
        },
        |_, i, _| {
            let x = &i[0];
            let b = slice_ref(x, &[0, 0, 3, 0], &[2, 8, 1, 32]);
            let b2 = slice_ref(x, &[0, 0, 2, 16], &[2, 8, 1, 32]);
            vec![
                slice_ref(x, &[1, 2, 1, 16], &[1, 6, 2, 32]),
                zip(&b, &b2, |p, q| 2.0 * p - q),
            ]
        },
    );
}

#[test]
fn reshape_view_and_copy_and_transpose() {
    check(
        "reshape",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 32, 2, 32]);
            let v = cx.f.reshape("v", x, &[2, 16, 64]).unwrap();
            let t = cx.f.transpose("t", x, &[0, 1, 3, 2]).unwrap();
            // Not a view: [32 (stride 1), 2 (stride 32)] cannot merge.
            let nv = cx.f.reshape("nv", t, &[1, 32, 64]).unwrap();
            // A view of the transposed tensor (splits a dim).
            let sv = cx.f.reshape("sv", t, &[32, 2, 16, 2]).unwrap();
            let st = cx.f.transpose("st", sv, &[1, 3, 0, 2]).unwrap();
            let p = cx.f.transpose("p", x, &[-2, 0, 1, -1]).unwrap();
            vec![v, nv, cx.out32("sto", st), p]
        },
        |_, i, _| {
            let x = &i[0];
            let t = x.transpose(&[0, 1, 3, 2]);
            let st = t.reshape(&[32, 2, 16, 2]).transpose(&[1, 3, 0, 2]);
            vec![
                x.reshape(&[2, 16, 64]),
                t.reshape(&[1, 32, 64]),
                st.reshape(&[64, 32]),
                x.transpose(&[2, 0, 1, 3]),
            ]
        },
    );
}

#[test]
fn concat_axes_and_interleave() {
    check(
        "concat",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let a = cx.input("a", &[1, 2, 1, 32]);
            let b = cx.input("b", &[1, 3, 1, 32]);
            let c = cx.input("c", &[1, 4, 1, 32]);
            let d = cx.input("d", &[2, 48]);
            let e = cx.input("e", &[2, 32]);
            let ch = cx.f.concat("ch", &[a, b, a], 1, false).unwrap();
            let last = cx.f.concat("last", &[e, d], -1, false).unwrap();
            let il = cx.f.concat("il", &[c, c, c], 1, true).unwrap();
            let cr = cx.f.reshape("cr", c, &[4, 32]).unwrap();
            let ex = cx.f.unary("ex", Op::Exp, cr).unwrap();
            let ct = cx.f.transpose("ct", cr, &[1, 0]).unwrap();
            let ct = cx.f.reshape("ctr", ct, &[4, 32]).unwrap();
            let ill = cx.f.concat("ill", &[ex, ct], -1, true).unwrap();
            vec![ch, last, il, ill]
        },
        |dev, i, _| {
            let (a, b, c, d, e) = (&i[0], &i[1], &i[2], &i[3], &i[4]);
            let cr = c.reshape(&[4, 32]);
            let ex = dev.r(cr.map(f64::exp));
            let ct = cr.transpose(&[1, 0]).reshape(&[4, 32]);
            vec![
                concat_ref(&[a, b, a], 1, false),
                concat_ref(&[e, d], 1, false),
                concat_ref(&[c, c, c], 1, true),
                concat_ref(&[&ex, &ct], 1, true),
            ]
        },
    );
}

// ---------------------------------------------------------------- elementwise

#[test]
fn binary_ops_broadcast_both_ways_and_scalars() {
    check(
        "binary",
        &Dev::BOTH,
        (0.5, 2.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 1, 4, 32]);
            let y = cx.input("y", &[3, 1, 32]);
            let mut outs = Vec::new();
            for (name, op) in [
                ("add", Op::Add),
                ("sub", Op::Sub),
                ("mul", Op::Mul),
                ("div", Op::RealDiv),
                ("pow", Op::Pow),
                ("max", Op::Maximum),
            ] {
                let a = cx.f.binary(name, op, x, y).unwrap();
                let l = cx.lit(1.25);
                let b = cx.f.binary(&format!("{name}_ls"), op, l, y).unwrap();
                let l = cx.lit(-0.75);
                let c = cx.f.binary(&format!("{name}_rs"), op, x, l).unwrap();
                outs.extend([a, b, c]);
            }
            outs
        },
        |_, i, _| {
            let (x, y) = (&i[0], &i[1]);
            let fs: [fn(f64, f64) -> f64; 6] = [
                |a, b| a + b,
                |a, b| a - b,
                |a, b| a * b,
                |a, b| a / b,
                f64::powf,
                f64::max,
            ];
            let (l, rs) = (T::new(&[], &[1.25]), T::new(&[], &[-0.75]));
            fs.iter()
                .flat_map(|f| [zip(x, y, f), zip(&l, y, f), zip(x, &rs, f)])
                .collect()
        },
    );
}

#[test]
fn unary_ops() {
    check(
        "unary",
        &Dev::BOTH,
        (-3.0, 3.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[4, 64]);
            let sg = cx.f.unary("sg", Op::Sigmoid, x).unwrap();
            let si = cx.f.unary("si", Op::Silu, x).unwrap();
            let ex = cx.f.unary("ex", Op::Exp, x).unwrap();
            let sq = cx.f.mul("sq", x, x).unwrap();
            let lg = cx.f.log("lg", sq, cx.dev.lit(0.5)).unwrap();
            let rs = cx.f.rsqrt("rs", sq, cx.dev.lit(0.25)).unwrap();
            vec![sg, si, ex, lg, rs]
        },
        |dev, i, _| {
            let x = &i[0];
            let sq = dev.r(x.map(|v| v * v));
            vec![
                x.map(sigmoid),
                x.map(|v| v * sigmoid(v)),
                x.map(f64::exp),
                sq.map(|v| (v + 0.5).ln()),
                sq.map(|v| 1.0 / (v + 0.25).sqrt()),
            ]
        },
    );
}

#[test]
fn select_with_bool_constant_and_scalars() {
    let pattern: Vec<bool> = (0..32).map(|i| i % 3 != 1).collect();
    let cond = Literal::Value {
        ty: TensorType::new(DType::Bool, [32]),
        data: TensorData::Bool(pattern.clone()),
    };
    check(
        "select",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        move |cx| {
            let a = cx.input("a", &[2, 4, 32]);
            let b = cx.input("b", &[1, 32]);
            let c = cx.f.constant("cond", cond.clone()).unwrap();
            let s1 = cx.f.select("s1", c, a, b).unwrap();
            let l = cx.lit(7.0);
            let s2 = cx.f.select("s2", c, l, a).unwrap();
            vec![s1, s2]
        },
        move |_, i, _| {
            let c = T::from_fn(&[32], |j| pattern[j[0]] as u8 as f64);
            let (a, b) = (&i[0], &i[1]);
            let s1 = T::from_fn(
                &[2, 4, 32],
                |j| {
                    if c.bc(j) != 0.0 {
                        a.bc(j)
                    } else {
                        b.bc(j)
                    }
                },
            );
            let s2 = T::from_fn(&[2, 4, 32], |j| if c.bc(j) != 0.0 { 7.0 } else { a.bc(j) });
            vec![s1, s2]
        },
    );
}

#[test]
fn cast_to_fp16_fp32_int32_bool() {
    // cpu: fp32 in/out; int32 and bool casts (rejected by ane-sim, rule 7) come back as fp32.
    check(
        "cast_cpu",
        &[Dev::Cpu],
        (-4.0, 4.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 32]);
            let h = cx.f.cast("h", x, DType::Fp16).unwrap();
            let h32 = cx.f.cast("h32", h, DType::Fp32).unwrap();
            let i = cx.f.cast("i", x, DType::Int32).unwrap();
            let i32_ = cx.f.cast("i32", i, DType::Fp32).unwrap();
            let r = cx.f.mul("r", x, Literal::fp32(0.0)).unwrap();
            let xs = cx.f.slice_by_size("xs", x, &[0, 0], &[1, 32]).unwrap();
            let xs = cx.f.concat("xz", &[xs, r], 0, false).unwrap();
            let xs = cx.f.slice_by_size("xzs", xs, &[0, 0], &[2, 32]).unwrap();
            let bl = cx.f.cast("bl", xs, DType::Bool).unwrap();
            let sel = cx.f.select("sel", bl, x, Literal::fp32(-9.0)).unwrap();
            let b32 = cx.f.cast("b32", bl, DType::Fp32).unwrap();
            // A cast whose result is returned fp16-typed, read through an fp32 surface.
            vec![h, h32, i32_, sel, b32]
        },
        |_, i, _| {
            let x = &i[0];
            let nz = T::from_fn(&[2, 32], |j| if j[0] == 0 { x.at(j) } else { 0.0 });
            vec![
                x.r16(),
                x.r16(),
                x.map(f64::trunc),
                T::from_fn(&[2, 32], |j| if nz.at(j) != 0.0 { x.at(j) } else { -9.0 }),
                nz.map(|v| (v != 0.0) as u8 as f64),
            ]
        },
    );
    check(
        "cast_sim",
        &Dev::BOTH,
        (-4.0, 4.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 32]);
            let other = if cx.dev == Dev::Cpu {
                DType::Fp16
            } else {
                DType::Fp32
            };
            let a = cx.f.cast("a", x, other).unwrap();
            let m =
                cx.f.mul("m", a, Literal::scalar(scalar_of(other, 3.0)))
                    .unwrap();
            vec![cx.f.cast("b", m, cx.dev.dtype()).unwrap()]
        },
        |dev, i, _| vec![dev.r(i[0].r16().map(|v| v * 3.0))],
    );
}

fn scalar_of(dt: DType, v: f32) -> TensorData {
    match dt {
        DType::Fp16 => TensorData::Fp16(vec![half::f16::from_f32(v)]),
        _ => TensorData::Fp32(vec![v]),
    }
}

// ---------------------------------------------------------------- attention

#[test]
fn sdpa_without_mask() {
    check(
        "sdpa",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let q = cx.input("q", &[1, 2, 32, 32]);
            let k = cx.input("k", &[1, 2, 48, 32]);
            let v = cx.input("v", &[1, 2, 48, 32]);
            vec![cx
                .f
                .scaled_dot_product_attention("o", q, k, v, None)
                .unwrap()]
        },
        |_, i, _| vec![sdpa_ref(&i[0], &i[1], &i[2], None)],
    );
}

#[test]
fn sdpa_with_masks_on_cpu() {
    let causal: Vec<bool> = (0..32).map(|i| i < 20).collect();
    let c2 = causal.clone();
    check(
        "sdpa_mask",
        &[Dev::Cpu],
        (-1.0, 1.0),
        1.0,
        move |cx| {
            let x = cx.input("x", &[2, 3, 32, 64]);
            let m = cx.input("m", &[3, 32, 32]);
            let q =
                cx.f.slice_by_size("q", x, &[0, 0, 0, 0], &[2, 3, 32, 16])
                    .unwrap();
            let k =
                cx.f.slice_by_size("k", x, &[0, 0, 0, 16], &[2, 3, 32, 16])
                    .unwrap();
            let v =
                cx.f.slice_by_size("v", x, &[0, 0, 0, 32], &[2, 3, 32, 32])
                    .unwrap();
            let add =
                cx.f.scaled_dot_product_attention("add", q, k, v, Some(m))
                    .unwrap();
            let bm =
                cx.f.constant(
                    "bm",
                    Literal::Value {
                        ty: TensorType::new(DType::Bool, [32]),
                        data: TensorData::Bool(c2.clone()),
                    },
                )
                .unwrap();
            let boolc =
                cx.f.scaled_dot_product_attention("boolc", q, k, v, Some(bm))
                    .unwrap();
            // A computed bool mask (not a const): x[0,0,0,:32] > 0 as bool.
            let row =
                cx.f.slice_by_size("row", m, &[0, 0, 0], &[1, 1, 32])
                    .unwrap();
            let pos = cx.f.maximum("pos", row, Literal::fp32(0.0)).unwrap();
            let bc = cx.f.cast("bc", pos, DType::Bool).unwrap();
            let boolv =
                cx.f.scaled_dot_product_attention("boolv", q, k, v, Some(bc))
                    .unwrap();
            vec![add, boolc, boolv]
        },
        move |_, i, _| {
            let (x, m) = (&i[0], &i[1]);
            let q = slice_ref(x, &[0, 0, 0, 0], &[2, 3, 32, 16]);
            let k = slice_ref(x, &[0, 0, 0, 16], &[2, 3, 32, 16]);
            let v = slice_ref(x, &[0, 0, 0, 32], &[2, 3, 32, 32]);
            let cm = T::from_fn(
                &[32],
                |j| if causal[j[0]] { 0.0 } else { f64::NEG_INFINITY },
            );
            let vm = T::from_fn(&[1, 1, 32], |j| {
                if m.at(&[0, 0, j[2]]) > 0.0 {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            });
            vec![
                sdpa_ref(&q, &k, &v, Some(m)),
                sdpa_ref(&q, &k, &v, Some(&cm)),
                sdpa_ref(&q, &k, &v, Some(&vm)),
            ]
        },
    );
}

// ---------------------------------------------------------------- constants and quantization

#[test]
fn blobfile_constant_in_elementwise_chain() {
    check(
        "blob_fp",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 4, 1, 32]);
            let w = cx.blob_rec("w", &[1, 4, 1, 1], -1.0, 1.0);
            let b = cx.blob_rec("b", &[32], -1.0, 1.0);
            let m = cx.f.mul("m", x, w).unwrap();
            vec![cx.f.add("y", m, b).unwrap(), cx.f.add("wb", w, b).unwrap()]
        },
        |dev, i, c| {
            let m = dev.r(zip(&i[0], c.get(0), |a, b| a * b));
            vec![
                zip(&m, c.get(1), |a, b| a + b),
                zip(c.get(0), c.get(1), |a, b| a + b),
            ]
        },
    );
}

#[test]
fn constexpr_affine_dequantize_int8_blob() {
    for per_axis in [true, false] {
        let name = if per_axis { "cad_axis" } else { "cad_scalar" };
        check(
            name,
            &Dev::BOTH,
            (-1.0, 1.0),
            1.0,
            move |cx| {
                let q: Vec<i8> = (0..48 * 64).map(|_| cx.rng.below(256) as i8).collect();
                let mut bw = BlobWriter::new();
                let off = bw.add_i8(&q);
                let path = "@model_path/weights/q.bin";
                cx.w.insert(path, bw.finish());
                let qd = Literal::BlobFile {
                    ty: TensorType::new(DType::Int8, [48, 64, 1, 1]),
                    path: path.into(),
                    offset: off,
                };
                let (scale, zp, ts, tz) = if per_axis {
                    let s: Vec<f32> = (0..48).map(|i| 0.001 + 0.0005 * i as f32).collect();
                    let z: Vec<i8> = (0..48).map(|i| (i as i8) - 20).collect();
                    let (sl, st) = cx.vec_lit(&s);
                    let zl = Literal::Value {
                        ty: TensorType::new(DType::Int8, [48]),
                        data: TensorData::Int8(z.clone()),
                    };
                    let zt = T::from_fn(&[48], |j| z[j[0]] as f64);
                    (sl, zl, st, zt)
                } else {
                    let s = cx.lit(0.004);
                    let st = T::new(&[1], &[cx.dev.q(0.004)]);
                    (s, Literal::int8(3), st, T::new(&[1], &[3.0]))
                };
                let qt = T::from_fn(&[48, 64, 1, 1], |j| q[j[0] * 64 + j[1]] as f64);
                let w = T::from_fn(&[48, 64, 1, 1], |j| {
                    let o = if ts.data.len() == 1 { 0 } else { j[0] };
                    (qt.at(j) - tz.at(&[o])) * ts.at(&[o])
                });
                rec(&cx.dev.r(w));
                let w =
                    cx.f.constexpr_affine_dequantize("wq", qd, scale, zp, 0)
                        .unwrap();
                let x = cx.input("x", &[1, 64, 1, 32]);
                vec![cx.f.conv("y", x, w, 1).unwrap()]
            },
            |_, i, c| {
                vec![conv_ref(
                    &i[0],
                    c.get(0),
                    None,
                    [1, 1],
                    [1, 1],
                    [0, 0],
                    1,
                    [1, 32],
                )]
            },
        );
    }
}

#[test]
fn quantize_dequantize_scalar_and_per_axis() {
    // Inputs are k·scale + small offsets, so rounding is unambiguous even in fp16.
    for dev in Dev::BOTH {
        for per_axis in [false, true] {
            let mut f = FunctionBuilder::new("main");
            let x = f
                .input("x", TensorType::new(dev.dtype(), [1, 4, 1, 32]))
                .unwrap();
            let scales = [0.05f32, 0.1, 0.02, 0.25];
            let zps = [3i8, -2, 0, 7];
            let (scale, zp): (Literal, Literal) = if per_axis {
                let s = match dev {
                    Dev::Cpu => TensorData::Fp32(scales.to_vec()),
                    Dev::Sim => {
                        TensorData::Fp16(scales.iter().map(|&v| half::f16::from_f32(v)).collect())
                    }
                };
                (
                    Literal::Value {
                        ty: TensorType::new(dev.dtype(), [4]),
                        data: s,
                    },
                    Literal::Value {
                        ty: TensorType::new(DType::Int8, [4]),
                        data: TensorData::Int8(zps.to_vec()),
                    },
                )
            } else {
                (dev.lit(0.05), Literal::int8(3))
            };
            let mut args: Vec<(&str, BuildArg)> = vec![
                ("input", x.into()),
                ("output_dtype", Literal::string("int8").into()),
                ("scale", scale.clone().into()),
                ("zero_point", zp.clone().into()),
            ];
            let mut dargs: Vec<(&str, BuildArg)> =
                vec![("scale", scale.into()), ("zero_point", zp.into())];
            if per_axis {
                args.push(("axis", Literal::int32(1).into()));
                dargs.push(("axis", Literal::int32(-3).into()));
            }
            let q = f.op("q", Op::Quantize, args).unwrap();
            dargs.push(("input", q.into()));
            let d = f.op("d", Op::Dequantize, dargs).unwrap();
            // The scalar form through the typed helpers as well.
            let q2 = f.quantize("q2", x, dev.lit(0.05)).unwrap();
            let d2 = f.dequantize("d2", q2, dev.lit(0.05)).unwrap();
            let program = Program::new(Dialect::Ios18, f.finish(&[d, d2]).unwrap());
            let mut rng = Rng::new(77);
            let s_of = |c: usize| {
                if per_axis {
                    dev.q(scales[c])
                } else {
                    dev.q(0.05)
                }
            };
            let z_of = |c: usize| if per_axis { zps[c] as f64 } else { 3.0 };
            let mut xs = Vec::new();
            for c in 0..4 {
                for _ in 0..32 {
                    let k = rng.below(300) as f32 - 150.0;
                    xs.push(dev.q((k + rng.uniform(-0.3, 0.3)) * s_of(c)));
                }
            }
            let out = run(dev, &program, &Weights::new(), std::slice::from_ref(&xs));
            let want = |s: &dyn Fn(usize) -> f32, z: &dyn Fn(usize) -> f64| {
                T::from_fn(&[1, 4, 1, 32], |j| {
                    let x = xs[j[1] * 32 + j[3]] as f64;
                    let sc = s(j[1]) as f64;
                    let q = ((x / sc).round() + z(j[1])).clamp(-128.0, 127.0);
                    (q - z(j[1])) * sc
                })
            };
            let tol = Tol::of(dev);
            assert_close(
                &format!("dequantize {per_axis} {dev:?}"),
                &out[0],
                &want(&s_of, &z_of),
                tol,
            );
            let s0 = |_: usize| dev.q(0.05);
            assert_close(
                &format!("dequantize2 {dev:?}"),
                &out[1],
                &want(&s0, &|_| 0.0),
                tol,
            );
        }
    }
}

// ---------------------------------------------------------------- fused chains

#[test]
fn long_fused_chain_mixing_broadcast_shapes() {
    check(
        "chain",
        &Dev::BOTH,
        (-1.0, 1.0),
        3.0,
        |cx| {
            let x = cx.input("x", &[2, 4, 1, 32]);
            let y = cx.input("y", &[4, 1, 32]);
            let z = cx.input("z", &[2, 1, 1, 32]);
            let f = &mut cx.f;
            let dt = cx.dev;
            let t1 = f.mul("t1", x, y).unwrap();
            let t2 = f.add("t2", t1, z).unwrap();
            let t3 = f.unary("t3", Op::Sigmoid, t2).unwrap();
            let t4 = f.mul("t4", t3, x).unwrap();
            let t5 = f.sub("t5", t4, dt.lit(0.5)).unwrap();
            let y2 = f.mul("y2", y, dt.lit(0.1)).unwrap();
            let t6 = f.maximum("t6", t5, y2).unwrap();
            let t7 = f.unary("t7", Op::Exp, t6).unwrap();
            let z2 = f.add("z2", z, dt.lit(2.0)).unwrap();
            let t8 = f.real_div("t8", t7, z2).unwrap();
            // A transposed leaf inside the chain and a multi-use intermediate.
            let xt = f.transpose("xt", x, &[1, 0, 2, 3]).unwrap();
            let xtt = f.transpose("xtt", xt, &[1, 0, 2, 3]).unwrap();
            let t9 = f.add("t9", t8, xtt).unwrap();
            let t10 = f.mul("t10", t9, t9).unwrap();
            let t11 = f.unary("t11", Op::Silu, t10).unwrap();
            let t12 = f.pow("t12", z2, dt.lit(-0.5)).unwrap();
            let t13 = f.mul("t13", t11, t12).unwrap();
            vec![t13, t9]
        },
        |dev, i, _| {
            let (x, y, z) = (&i[0], &i[1], &i[2]);
            let r = |t: T| dev.r(t);
            let t1 = r(zip(x, y, |a, b| a * b));
            let t2 = r(zip(&t1, z, |a, b| a + b));
            let t3 = r(t2.map(sigmoid));
            let t4 = r(zip(&t3, x, |a, b| a * b));
            let t5 = r(t4.map(|v| v - 0.5));
            let y2 = r(y.map(|v| v * dev.q(0.1) as f64));
            let t6 = r(zip(&t5, &y2, f64::max));
            let t7 = r(t6.map(f64::exp));
            let z2 = r(z.map(|v| v + 2.0));
            let t8 = r(zip(&t7, &z2, |a, b| a / b));
            let t9 = r(zip(&t8, x, |a, b| a + b));
            let t10 = r(t9.map(|v| v * v));
            let t11 = r(t10.map(|v| v * sigmoid(v)));
            let t12 = r(z2.map(|v| v.powf(-0.5)));
            vec![r(zip(&t11, &t12, |a, b| a * b)), t9]
        },
    );
}

#[test]
fn rmsnorm_sample_matches_reference() {
    for dev in Dev::BOTH {
        let program = ane_mil::samples::rmsnorm(64, 32).unwrap();
        let mut rng = Rng::new(5);
        let w = rng.vec(64, 0.5, 1.5);
        let mut weights = Weights::new();
        weights.insert(
            "@model_path/weights/rms.bin",
            ane_mil::blob::single_f32_as_f16(&w),
        );
        let x: Vec<f32> = rng
            .vec(64 * 32, -2.0, 2.0)
            .iter()
            .map(|&v| r16(v))
            .collect();
        let out = run(dev, &program, &weights, std::slice::from_ref(&x));
        let want = T::from_fn(&[1, 64, 1, 32], |j| {
            let s = j[3];
            let ss: f64 = (0..64).map(|c| (x[c * 32 + s] as f64).powi(2)).sum::<f64>() / 64.0;
            x[j[1] * 32 + s] as f64 * r16(w[j[1]]) as f64 / (ss + 1e-5).sqrt()
        });
        assert_close("rmsnorm", &out[0], &want, Tol::of(dev).times(2.0));
    }
}

#[test]
fn causal_attention_sample_matches_reference() {
    let (h, hd, s) = (2, 16, 32);
    let program = ane_mil::samples::causal_attention(h, hd, s).unwrap();
    let mask: Vec<f32> = (0..s * s)
        .map(|i| if i % s <= i / s { 0.0 } else { -65504.0 })
        .collect();
    let mut weights = Weights::new();
    weights.insert(
        "@model_path/weights/mask.bin",
        ane_mil::blob::single_f32_as_f16(&mask),
    );
    let mut rng = Rng::new(9);
    let qd = h * hd;
    let x: Vec<f32> = rng
        .vec(3 * qd * s, -1.0, 1.0)
        .iter()
        .map(|&v| r16(v))
        .collect();
    for dev in Dev::BOTH {
        let out = run(dev, &program, &weights, std::slice::from_ref(&x));
        let heads = |block: usize| {
            T::from_fn(&[1, h, s, hd], |j| {
                x[(block * qd + j[1] * hd + j[3]) * s + j[2]] as f64
            })
        };
        let m = T::from_fn(&[1, 1, s, s], |j| mask[j[2] * s + j[3]] as f64);
        let att = sdpa_ref(&heads(0), &heads(1), &heads(2), Some(&m));
        let want = T::from_fn(&[1, qd, 1, s], |j| att.at(&[0, j[1] / hd, j[3], j[1] % hd]));
        assert_close("causal attention", &out[0], &want, Tol::of(dev).times(2.0));
    }
}

// ---------------------------------------------------------------- sizes that split across tasks

#[test]
fn large_tensors_take_the_parallel_paths() {
    check(
        "large",
        &Dev::BOTH,
        (-1.0, 1.0),
        2.0,
        |cx| {
            let x = cx.input("x", &[4, 8, 2048]);
            let y = cx.blob_rec("y", &[8, 1], -1.0, 1.0);
            let z = cx.input("z", &[2048]);
            let a = cx.input("a", &[8, 64, 64]);
            let b = cx.input("b", &[128, 128]);
            let f = &mut cx.f;
            let xy = f.mul("xy", x, y).unwrap();
            let e = f.add("e", xy, z).unwrap();
            let sm = f.softmax("sm", x, -1).unwrap();
            let sm1 = f.softmax("sm1", x, 1).unwrap();
            let rs = f.reduce_sum("rs", x, &[0, 1], false).unwrap();
            let xt = f.transpose("xt", x, &[0, 2, 1]).unwrap();
            let big = f.reshape("big", xt, &[4, 2048 * 8]).unwrap();
            let bm = f.matmul("bm", a, a, false, true).unwrap();
            let mm = f.matmul("mm", b, b, true, false).unwrap();
            vec![e, sm, sm1, rs, big, bm, mm]
        },
        |_, i, c| {
            let (x, y, z, a, b) = (&i[0], c.get(0), &i[1], &i[2], &i[3]);
            vec![
                zip(&zip(x, y, |p, q| p * q), z, |p, q| p + q),
                softmax_ref(x, 2),
                softmax_ref(x, 1),
                reduce_ref(x, &[0, 1], false, false),
                x.transpose(&[0, 2, 1]).reshape(&[4, 2048 * 8]),
                matmul_ref(a, a, false, true),
                matmul_ref(b, b, true, false),
            ]
        },
    );
}

#[test]
fn outputs_that_are_inputs_views_constants_or_repeated() {
    check(
        "outputs",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[2, 64]);
            let w = cx.blob_rec("w", &[2, 32], -1.0, 1.0);
            let s = cx.f.slice_by_size("s", x, &[0, 32], &[2, 32]).unwrap();
            let e = cx.f.unary("e", Op::Exp, s).unwrap();
            let t = cx.f.transpose("t", x, &[1, 0]).unwrap();
            let tr = cx.f.reshape("tr", t, &[4, 32]).unwrap();
            let half = cx.f.slice_by_size("h", e, &[1, 0], &[1, 32]).unwrap();
            vec![x, s, w, e, tr, half]
        },
        |dev, i, c| {
            let x = &i[0];
            let s = slice_ref(x, &[0, 32], &[2, 32]);
            let e = dev.r(s.map(f64::exp));
            vec![
                x.clone(),
                s.clone(),
                c.get(0).clone(),
                e.clone(),
                x.transpose(&[1, 0]).reshape(&[4, 32]),
                slice_ref(&e, &[1, 0], &[1, 32]),
            ]
        },
    );
}

#[test]
fn conv_of_a_transposed_input_and_dequantize_on_axis_1() {
    check(
        "conv_t",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[1, 32, 4, 32]);
            let t = cx.f.transpose("t", x, &[0, 3, 2, 1]).unwrap();
            let q: Vec<i8> = (0..16 * 32)
                .map(|_| (cx.rng.below(200) as i32 - 100) as i8)
                .collect();
            let mut bw = BlobWriter::new();
            let _pad = bw.add_f32(&[1.0; 3]);
            let off = bw.add_i8(&q);
            cx.w.insert("@model_path/weights/q1.bin", bw.finish());
            let s: Vec<f32> = (0..32).map(|i| 0.002 * (i + 1) as f32).collect();
            let (sl, st) = cx.vec_lit(&s);
            let wt = T::from_fn(&[16, 32, 1, 1], |j| {
                q[j[0] * 32 + j[1]] as f64 * st.at(&[j[1]])
            });
            rec(&cx.dev.r(wt));
            let w =
                cx.f.constexpr_affine_dequantize(
                    "wq",
                    Literal::BlobFile {
                        ty: TensorType::new(DType::Int8, [16, 32, 1, 1]),
                        path: "@model_path/weights/q1.bin".into(),
                        offset: off,
                    },
                    sl,
                    Literal::int8(0),
                    1,
                )
                .unwrap();
            let c = cx.f.conv("c", t, w, 1).unwrap();
            vec![cx.out32("y", c)]
        },
        |_, i, c| {
            let t = i[0].transpose(&[0, 3, 2, 1]);
            let r = conv_ref(&t, c.get(0), None, [1, 1], [1, 1], [0, 0], 1, [4, 32]);
            vec![r.reshape(&[64, 32])]
        },
    );
}

#[test]
fn cpu_runs_fp32_programs_on_fp16_surfaces() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", TensorType::new(DType::Fp32, [4, 32])).unwrap();
    let y = f.unary("y", Op::Exp, x).unwrap();
    let program = Program::new(Dialect::Ios18, f.finish(&[y]).unwrap());
    let dev = ane_runtime::open("cpu").unwrap();
    let k = dev.compile(&program, &Weights::new()).unwrap();
    let xs = dev.surface(&[4, 32], DType::Fp16).unwrap();
    let ys = dev.surface(&[4, 32], DType::Fp16).unwrap();
    let vals: Vec<f32> = Rng::new(3)
        .vec(128, -2.0, 2.0)
        .iter()
        .map(|&v| r16(v))
        .collect();
    xs.write_f32(&vals).unwrap();
    k.bind(&[("x", &xs)], &[("y", &ys)])
        .unwrap()
        .eval()
        .unwrap();
    let want = T::new(&[4, 32], &vals).map(|v| r16(v.exp() as f32) as f64);
    assert_close(
        "fp16 surfaces on cpu",
        &ys.read_f32().unwrap(),
        &want,
        Tol::of(Dev::Cpu),
    );
}

#[test]
fn views_of_views_feed_softmax_sdpa_and_reshape() {
    check(
        "views2",
        &Dev::BOTH,
        (-1.0, 1.0),
        1.0,
        |cx| {
            let x = cx.input("x", &[4, 64]);
            let s = cx.f.slice_by_size("s", x, &[0, 16], &[4, 32]).unwrap();
            let split = cx.f.reshape("split", s, &[2, 2, 32]).unwrap();
            let merged = cx.f.reshape("merged", split, &[2, 64]).unwrap();
            let rows = cx.f.slice_by_size("rows", x, &[1, 0], &[2, 64]).unwrap();
            let sm = cx.f.softmax("sm", rows, -1).unwrap();
            let q = cx.input("q", &[2, 32, 32]);
            let kt = cx.f.transpose("kt", q, &[0, 2, 1]).unwrap();
            let v =
                cx.f.slice_by_size("v", q, &[0, 0, 0], &[2, 16, 32])
                    .unwrap();
            let k =
                cx.f.slice_by_size("k", kt, &[0, 16, 0], &[2, 16, 32])
                    .unwrap();
            let o =
                cx.f.scaled_dot_product_attention("o", q, k, v, None)
                    .unwrap();
            let red = cx.f.reduce_max("red", kt, &[0], false).unwrap();
            vec![merged, sm, o, red]
        },
        |_, i, _| {
            let (x, q) = (&i[0], &i[1]);
            let s = slice_ref(x, &[0, 16], &[4, 32]);
            let rows = slice_ref(x, &[1, 0], &[2, 64]);
            let kt = q.transpose(&[0, 2, 1]);
            let v = slice_ref(q, &[0, 0, 0], &[2, 16, 32]);
            let k = slice_ref(&kt, &[0, 16, 0], &[2, 16, 32]);
            vec![
                s.reshape(&[2, 64]),
                softmax_ref(&rows, 1),
                sdpa_ref(q, &k, &v, None),
                reduce_ref(&kt, &[0], false, true),
            ]
        },
    );
}

#[test]
fn bindings_of_one_kernel_evaluate_concurrently() {
    let mut f = FunctionBuilder::new("main");
    let x = f
        .input("x", TensorType::new(DType::Fp32, [64, 64]))
        .unwrap();
    let m = f.matmul("m", x, x, false, true).unwrap();
    let y = f.softmax("y", m, -1).unwrap();
    let program = Program::new(Dialect::Ios18, f.finish(&[y]).unwrap());
    let dev = Dev::Cpu.open();
    let k = dev.compile(&program, &Weights::new()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (k, dev) = (k.clone(), dev.clone());
            scope.spawn(move || {
                let xs = dev.surface(&[64, 64], DType::Fp32).unwrap();
                let ys = dev.surface(&[64, 64], DType::Fp32).unwrap();
                let v = Rng::new(t).vec(64 * 64, -0.5, 0.5);
                xs.write_f32(&v).unwrap();
                let b = k.bind(&[("x", &xs)], &[("y", &ys)]).unwrap();
                let xt = T::new(&[64, 64], &v);
                let want = softmax_ref(&matmul_ref(&xt, &xt, false, true), 1);
                for _ in 0..5 {
                    b.eval().unwrap();
                    assert_close(
                        "concurrent",
                        &ys.read_f32().unwrap(),
                        &want,
                        Tol::of(Dev::Cpu),
                    );
                }
            });
        }
    });
}
