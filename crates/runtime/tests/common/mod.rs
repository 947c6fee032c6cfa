//! Shared helpers for the CPU executor tests: a seeded PRNG, a small f64 tensor for naive
//! reference implementations, and a runner that compiles a Program on `cpu` or `ane-sim`,
//! feeds it and reads its outputs.

#![allow(dead_code)]

use std::sync::Arc;

use ane_mil::{DType, Literal, Program};
use ane_runtime::{Device, Surface, Weights};
use half::f16;

/// xorshift64* — deterministic and dependency free.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Rounds to the nearest fp16 value.
pub fn r16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// A dense row-major f64 tensor for references.
#[derive(Debug, Clone, PartialEq)]
pub struct T {
    /// Dims.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f64>,
}

impl T {
    /// Wraps f32 values.
    pub fn new(shape: &[usize], data: &[f32]) -> T {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        T {
            shape: shape.to_vec(),
            data: data.iter().map(|&x| x as f64).collect(),
        }
    }

    /// A tensor whose element at each index is `f(index)`.
    pub fn from_fn(shape: &[usize], mut f: impl FnMut(&[usize]) -> f64) -> T {
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(n);
        let mut idx = vec![0; shape.len()];
        for _ in 0..n {
            data.push(f(&idx));
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        T {
            shape: shape.to_vec(),
            data,
        }
    }

    /// Flat index of `idx`.
    pub fn flat(&self, idx: &[usize]) -> usize {
        assert_eq!(idx.len(), self.shape.len());
        idx.iter().zip(&self.shape).fold(0, |acc, (&i, &n)| {
            assert!(i < n, "index {idx:?} outside {:?}", self.shape);
            acc * n + i
        })
    }

    /// Element at `idx`.
    pub fn at(&self, idx: &[usize]) -> f64 {
        self.data[self.flat(idx)]
    }

    /// Element at `idx` of a broadcast to a shape of `idx.len()` dims (NumPy rules).
    pub fn bc(&self, idx: &[usize]) -> f64 {
        let lead = idx.len() - self.shape.len();
        let own: Vec<usize> = self
            .shape
            .iter()
            .enumerate()
            .map(|(d, &n)| if n == 1 { 0 } else { idx[lead + d] })
            .collect();
        self.at(&own)
    }

    /// Same data, new shape.
    pub fn reshape(&self, shape: &[usize]) -> T {
        assert_eq!(shape.iter().product::<usize>(), self.data.len());
        T {
            shape: shape.to_vec(),
            data: self.data.clone(),
        }
    }

    /// `out[i] = self[i permuted]`: out dim d is self dim perm[d].
    pub fn transpose(&self, perm: &[usize]) -> T {
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        T::from_fn(&shape, |idx| {
            let mut src = vec![0; idx.len()];
            for (d, &p) in perm.iter().enumerate() {
                src[p] = idx[d];
            }
            self.at(&src)
        })
    }

    /// Elementwise map.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> T {
        T {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    /// Rounds every value to fp16 (the ane-sim reference for an op result).
    pub fn r16(&self) -> T {
        self.map(|x| r16(x as f32) as f64)
    }
}

/// Broadcast shape of two shapes.
pub fn bshape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            if da == 1 {
                db
            } else {
                assert!(db == 1 || db == da, "{a:?} vs {b:?}");
                da
            }
        })
        .collect()
}

/// Elementwise binary op with broadcasting.
pub fn zip(a: &T, b: &T, f: impl Fn(f64, f64) -> f64) -> T {
    let shape = bshape(&a.shape, &b.shape);
    T::from_fn(&shape, |i| f(a.bc(i), b.bc(i)))
}

/// Which device a check runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dev {
    /// `cpu` with fp32 surfaces.
    Cpu,
    /// `ane-sim` with fp16 surfaces.
    Sim,
}

impl Dev {
    /// Both devices.
    pub const BOTH: [Dev; 2] = [Dev::Cpu, Dev::Sim];

    /// The device name for `ane_runtime::open`.
    pub fn name(self) -> &'static str {
        match self {
            Dev::Cpu => "cpu",
            Dev::Sim => "ane-sim",
        }
    }

    /// The I/O dtype of programs on this device.
    pub fn dtype(self) -> DType {
        match self {
            Dev::Cpu => DType::Fp32,
            Dev::Sim => DType::Fp16,
        }
    }

    /// A scalar float literal of this device's dtype.
    pub fn lit(self, v: f32) -> Literal {
        match self {
            Dev::Cpu => Literal::fp32(v),
            Dev::Sim => Literal::fp16(v),
        }
    }

    /// `x` as the device would see a value of its dtype.
    pub fn q(self, x: f32) -> f32 {
        match self {
            Dev::Cpu => x,
            Dev::Sim => r16(x),
        }
    }

    /// Rounds reference op results on ane-sim, leaves them alone on cpu.
    pub fn r(self, t: T) -> T {
        match self {
            Dev::Cpu => t,
            Dev::Sim => t.r16(),
        }
    }

    /// Opens the device.
    pub fn open(self) -> Arc<dyn Device> {
        ane_runtime::open(self.name()).unwrap()
    }
}

/// Allocates one surface per shape with a common allocation size (>= every data size and
/// the device minimum), as the Neural Engine wants for the inputs (or outputs) of a request.
pub fn surfaces(dev: &dyn Device, shapes: &[Vec<usize>], dtype: DType) -> Vec<Surface> {
    let size = dtype.size_bytes().unwrap();
    let alloc = shapes
        .iter()
        .map(|s| s.iter().product::<usize>() * size)
        .max()
        .unwrap_or(0)
        .max(dev.capabilities().min_surface_bytes);
    shapes
        .iter()
        .map(|s| dev.surface_with_alloc(s, dtype, alloc).unwrap())
        .collect()
}

/// Compiles `program` on `dev`, binds fresh surfaces by name, writes `inputs` (in declaration
/// order), evaluates once and returns the outputs as f32 (in return order).
pub fn run(dev: Dev, program: &Program, weights: &Weights, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let device = dev.open();
    let kernel = device
        .compile(program, weights)
        .unwrap_or_else(|e| panic!("compile on {}: {e}", dev.name()));
    let info = kernel.info().clone();
    assert_eq!(info.inputs.len(), inputs.len(), "input count");
    let ins = surfaces(
        &*device,
        &info
            .inputs
            .iter()
            .map(|d| d.ty.shape.clone())
            .collect::<Vec<_>>(),
        dev.dtype(),
    );
    let outs = surfaces(
        &*device,
        &info
            .outputs
            .iter()
            .map(|d| d.ty.shape.clone())
            .collect::<Vec<_>>(),
        dev.dtype(),
    );
    for (s, v) in ins.iter().zip(inputs) {
        s.write_f32(v).unwrap();
    }
    let in_pairs: Vec<(&str, &Surface)> = info
        .inputs
        .iter()
        .zip(&ins)
        .map(|(d, s)| (d.name.as_str(), s))
        .collect();
    let out_pairs: Vec<(&str, &Surface)> = info
        .outputs
        .iter()
        .zip(&outs)
        .map(|(d, s)| (d.name.as_str(), s))
        .collect();
    let binding = kernel
        .bind(&in_pairs, &out_pairs)
        .unwrap_or_else(|e| panic!("bind on {}: {e}", dev.name()));
    binding.eval().unwrap();
    // A second eval must give the same answer (no state leaks between evaluations).
    let first: Vec<Vec<f32>> = outs.iter().map(|s| s.read_f32().unwrap()).collect();
    binding.eval().unwrap();
    let second: Vec<Vec<f32>> = outs.iter().map(|s| s.read_f32().unwrap()).collect();
    assert_eq!(first.len(), second.len());
    for (a, b) in first.iter().zip(&second) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "second eval differs on {}",
            dev.name()
        );
    }
    first
}

/// Tolerances for one comparison.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// Relative to the element's magnitude plus the tensor's mean magnitude.
    pub rel: f64,
    /// Absolute floor.
    pub abs: f64,
}

impl Tol {
    /// The default tolerance for `dev`: ~1e-5 on cpu, fp16-sized on ane-sim.
    pub fn of(dev: Dev) -> Tol {
        match dev {
            Dev::Cpu => Tol {
                rel: 1e-5,
                abs: 1e-6,
            },
            Dev::Sim => Tol {
                rel: 1e-2,
                abs: 1e-3,
            },
        }
    }

    /// Scales both bounds by `k` (for long reductions and chains).
    pub fn times(self, k: f64) -> Tol {
        Tol {
            rel: self.rel * k,
            abs: self.abs * k,
        }
    }
}

/// Asserts `got` matches `want` within `tol`: `|g - w| <= abs + rel·(|w| + mean|w|)`.
pub fn assert_close(what: &str, got: &[f32], want: &T, tol: Tol) {
    assert_eq!(
        got.len(),
        want.data.len(),
        "{what}: {} values, expected {:?}",
        got.len(),
        want.shape
    );
    let mean = want.data.iter().map(|x| x.abs()).sum::<f64>() / want.data.len().max(1) as f64;
    for (i, (&g, &w)) in got.iter().zip(&want.data).enumerate() {
        let err = (g as f64 - w).abs();
        let bound = tol.abs + tol.rel * (w.abs() + mean);
        let same_inf = w.is_infinite() && g as f64 == w;
        assert!(
            same_inf || err <= bound,
            "{what}: element {i} of {:?} is {g}, expected {w} (|err| {err:e} > {bound:e})",
            want.shape
        );
    }
}
