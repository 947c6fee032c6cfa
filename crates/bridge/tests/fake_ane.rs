//! The bridge's handle layer on the `ane` driver, over the runtime's fake framework
//! (`ane::fake::FakeSys`, which evaluates on the CPU in Neural Engine fidelity): the same
//! surfaces, request building in alphabetical order, budget and binding rules the real device
//! uses — everything of the bridge on `ane` except Apple's framework itself.

use std::sync::Arc;

use ane_bridge::device::{Choice, Opened};
use ane_bridge::handle::{copy_io, CopyKind, Handle, Spec};
use ane_runtime::ane::fake::{Call, FakeSys};
use ane_runtime::ane::{AneDevice, AneOptions};
use ane_runtime::budget::CompileBudget;
use half::f16;

const MATMUL: &str = "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 64, 1, 64]> x, tensor<fp16, [1, 64, 64]> W) {\n        tensor<int32, [3]> sh = const()[name=string(\"sh\"), val=tensor<int32, [3]>([1,64,64])];\n        tensor<fp16, [1,64,64]> x3 = reshape(shape=sh,x=x)[name=string(\"x3\")];\n        bool f = const()[name=string(\"f\"), val=bool(false)];\n        tensor<fp16, [1,64,64]> out = matmul(transpose_x=f,transpose_y=f,x=W,y=x3)[name=string(\"out\")];\n    } -> (out);\n}\n";

const ADD: &str = "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 64, 1, 64]> a) {\n        tensor<fp16, [1,64,1,64]> y = add(x=a,y=a)[name=string(\"y\")];\n    } -> (y);\n}\n";

const BYTES: usize = 64 * 64 * 2;

fn fake_ane(budget: &Arc<CompileBudget>) -> (Opened, Arc<FakeSys>) {
    let dev = AneDevice::new(FakeSys::new(), AneOptions::new(budget.clone())).unwrap();
    let sys = dev.sys().clone();
    (Opened::new(Arc::new(dev), Choice::Ane), sys)
}

fn halves(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
        .collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

fn rand(n: usize, seed: &mut u32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f16::from_f32(((*seed >> 8) & 0xFFFF) as f32 / 32768.0 - 1.0).to_f32()
        })
        .collect()
}

#[test]
fn dynamic_matmul_weight_writes_cache_and_copy_io_on_the_ane_driver() {
    let budget = Arc::new(CompileBudget::new(10));
    let (opened, sys) = fake_ane(&budget);
    let spec = Spec {
        mil: MATMUL,
        files: Vec::new(),
        input_sizes: &[BYTES],
        weight_sizes: &[BYTES],
        output_sizes: &[BYTES],
    };
    let mut h = Handle::compile_on(&opened, &spec).unwrap();
    assert_eq!(budget.used(), 1);
    let mut seed = 7;
    let (x, w) = (rand(64 * 64, &mut seed), rand(64 * 64, &mut seed));
    h.write(false, 0, &halves(&x)).unwrap();
    h.write_weight_f32(0, &w).unwrap();
    h.eval().unwrap();
    let mut out = vec![0u8; BYTES];
    assert_eq!(h.read_output(0, &mut out).unwrap(), BYTES);
    let got = floats(&out);
    let mut worst = 0f32;
    for n in 0..64 {
        for m in 0..64 {
            let want: f32 = (0..64).map(|k| w[n * 64 + k] * x[k * 64 + m]).sum();
            worst = worst.max((got[n * 64 + m] - want).abs() / want.abs().max(1.0));
        }
    }
    assert!(worst < 2e-2, "max relative error {worst}");
    // Surfaces were made for x, W, out in that order, each at least 48 KiB; the request lists
    // W before x (alphabetical), though the caller's index 0 is x.
    let calls = sys.calls();
    let made: Vec<(u64, usize)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::NewSurface { surface, bytes } => Some((*surface, *bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(made.len(), 3, "{calls:?}");
    assert!(made.iter().all(|&(_, b)| b >= 49_152), "{made:?}");
    let request = calls
        .iter()
        .find_map(|c| match c {
            Call::NewRequest { inputs, .. } => Some(inputs.clone()),
            _ => None,
        })
        .expect("a request was built");
    assert_eq!(request, vec![made[1].0, made[0].0]);

    // Weight writes need no compile; the same program again is served from the kernel cache.
    h.write_weight_f32(0, &x).unwrap();
    h.eval().unwrap();
    let again = Handle::compile_on(&opened, &spec).unwrap();
    assert_eq!(budget.used(), 1, "no compile for a cache hit");
    assert_eq!(sys.compiles(), 1);
    drop(again);

    // copy_io between two kernels on the device: aliased, then detached on a write.
    let add = |mil| Spec {
        mil,
        files: Vec::new(),
        input_sizes: &[BYTES],
        weight_sizes: &[],
        output_sizes: &[BYTES],
    };
    let k1 = Handle::compile_on(&opened, &add(ADD)).unwrap();
    let mut k2 = Handle::compile_on(&opened, &add(ADD)).unwrap();
    let mut k1 = k1;
    k1.write(false, 0, &halves(&x)).unwrap();
    k1.eval().unwrap();
    assert_eq!(copy_io(&k1, 0, &mut k2, 0).unwrap(), CopyKind::Aliased);
    k2.eval().unwrap();
    k2.read_output(0, &mut out).unwrap();
    let four: Vec<f32> = x.iter().map(|v| 4.0 * v).collect();
    assert_eq!(floats(&out), four);
    k2.write(false, 0, &halves(&vec![0.0; 64 * 64])).unwrap();
    k1.read_output(0, &mut out).unwrap();
    let two: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
    assert_eq!(
        floats(&out),
        two,
        "writing k2's input left k1's output alone"
    );
    assert!(matches!(
        copy_io(&h, 0, &mut k2, 0),
        Ok(CopyKind::Aliased | CopyKind::Copied)
    ));
}

#[test]
fn a_spent_budget_is_a_compile_error() {
    let budget = Arc::new(CompileBudget::new(1));
    let (opened, _) = fake_ane(&budget);
    let spec = |mil| Spec {
        mil,
        files: Vec::new(),
        input_sizes: &[BYTES],
        weight_sizes: &[],
        output_sizes: &[BYTES],
    };
    Handle::compile_on(&opened, &spec(ADD)).unwrap();
    let other = ADD.replace("add(x=a,y=a)", "mul(x=a,y=a)");
    let e = Handle::compile_on(&opened, &spec(&other)).unwrap_err();
    assert!(e.to_string().contains("budget"), "{e}");
}
