//! The CPU executor makes no heap allocation while it evaluates: every intermediate lives in
//! the arena sized at compile/bind time. Checked with a counting global allocator (this test
//! binary holds a single test, so nothing else allocates concurrently).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ane_mil::blob::BlobWriter;
use ane_mil::samples;
use ane_runtime::{open, Surface, Weights};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `n` evals of `program` after warm-up, on `device`.
fn allocs_per_eval(device: &str, program: &ane_mil::Program, weights: &Weights) -> usize {
    let dev = open(device).unwrap();
    let dt = dev.capabilities().surface_dtypes[0];
    let k = dev.compile(program, weights).unwrap();
    let info = k.info().clone();
    let ins: Vec<Surface> = info
        .inputs
        .iter()
        .map(|d| dev.surface(&d.ty.shape, dt).unwrap())
        .collect();
    let outs: Vec<Surface> = info
        .outputs
        .iter()
        .map(|d| dev.surface(&d.ty.shape, dt).unwrap())
        .collect();
    for s in &ins {
        s.write_f32(
            &(0..s.elements())
                .map(|i| (i % 17) as f32 / 17.0)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    }
    let ib: Vec<(&str, &Surface)> = info
        .inputs
        .iter()
        .map(|d| d.name.as_str())
        .zip(&ins)
        .collect();
    let ob: Vec<(&str, &Surface)> = info
        .outputs
        .iter()
        .map(|d| d.name.as_str())
        .zip(&outs)
        .collect();
    let b = k.bind(&ib, &ob).unwrap();
    for _ in 0..3 {
        b.eval().unwrap();
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..20 {
        b.eval().unwrap();
    }
    (ALLOCS.load(Ordering::SeqCst) - before) / 20
}

/// A 1x1 conv with a BLOBFILE weight, large enough to split across threads.
fn baked_conv() -> (ane_mil::Program, Weights) {
    use ane_mil::builder::FunctionBuilder;
    use ane_mil::{DType, Dialect, Program, TensorType};
    let mut f = FunctionBuilder::new("main");
    let x = f
        .input("x", TensorType::new(DType::Fp16, [1, 256, 1, 256]))
        .unwrap();
    let wt = f
        .blob_constant(
            "w",
            TensorType::new(DType::Fp16, [256, 256, 1, 1]),
            "@model_path/weights/w.bin",
            64,
        )
        .unwrap();
    let y = f.conv("y", x, wt, 1).unwrap();
    let mut blob = BlobWriter::new();
    blob.add_f32_as_f16(&vec![0.01; 256 * 256]);
    let mut w = Weights::new();
    w.insert("@model_path/weights/w.bin", blob.finish());
    (Program::new(Dialect::Ios18, f.finish(&[y]).unwrap()), w)
}

#[test]
fn eval_allocates_nothing() {
    let mut w = Weights::new();
    let mut blob = BlobWriter::new();
    blob.add_f32_as_f16(&vec![1.0; 768]);
    w.insert("@model_path/weights/rms.bin", blob.finish());
    let mut mask = BlobWriter::new();
    mask.add_f32_as_f16(&vec![0.0; 64 * 64]);
    w.insert("@model_path/weights/mask.bin", mask.finish());
    let rms = samples::rmsnorm(768, 256).unwrap();
    let att = samples::causal_attention(4, 16, 64).unwrap();
    let packed = samples::dynamic_matmul_packed(64, 64, 64).unwrap();
    let big = samples::dynamic_matmul_packed(768, 768, 256).unwrap();
    for device in ["cpu", "ane-sim"] {
        assert_eq!(
            allocs_per_eval(device, &rms, &w),
            0,
            "{device}: RMSNorm (fused elementwise + reduce)"
        );
        assert_eq!(
            allocs_per_eval(device, &att, &w),
            0,
            "{device}: attention (views, batched matmuls, softmax)"
        );
        assert_eq!(
            allocs_per_eval(device, &packed, &w),
            0,
            "{device}: small packed matmul"
        );
    }
    assert_eq!(
        allocs_per_eval("cpu", &big, &w),
        0,
        "large packed matmul split across threads"
    );
    let (baked, bw) = baked_conv();
    assert_eq!(
        allocs_per_eval("cpu", &baked, &bw),
        0,
        "1x1 conv (GEMM fast path)"
    );
}
