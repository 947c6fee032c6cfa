//! The ANE driver against the fake framework (`ane::fake::FakeSys`): message sequence, argument
//! rules, error paths, budget, cache, pool, temp-dir cleanup, binding order, and — through the
//! CPU device behind the fake — numbers identical to `ane-sim`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ane_runtime::ane::fake::{Call, FakeConfig, FakeSurface, FakeSys};
use ane_runtime::ane::{AneDevice, AneOptions, AneSys, ArtifactCache, SurfaceRecycler, QOS};
use ane_runtime::budget::CompileBudget;
use ane_runtime::cache::CacheKey;
use ane_runtime::mil::blob::BlobWriter;
use ane_runtime::mil::builder::FunctionBuilder;
use ane_runtime::mil::{samples, DType, Dialect, Program, TensorType};
use ane_runtime::rules::AneRule;
use ane_runtime::{BindingOrder, Device, DeviceKind, Error, Fidelity, Kernel, Realtime, Weights};

const C: usize = 64;
const S: usize = 512;

fn fp16(shape: &[usize]) -> TensorType {
    TensorType::new(DType::Fp16, shape.to_vec())
}

fn options(budget: usize) -> AneOptions {
    AneOptions::new(Arc::new(CompileBudget::new(budget)))
}

fn device_with(config: FakeConfig, opts: AneOptions) -> AneDevice<FakeSys> {
    AneDevice::new(FakeSys::with_config(config), opts).expect("the fake opens")
}

fn device() -> AneDevice<FakeSys> {
    device_with(FakeConfig::default(), options(100))
}

/// `y = x - W` over `[1, C, 1, S]`: params declared `x` then `W`, which sort the other way
/// (`W` < `x` byte-wise), and a result that changes sign when the inputs are swapped.
fn params_program() -> Program {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, C, 1, S])).unwrap();
    let w = f.input("W", fp16(&[1, C, 1, S])).unwrap();
    let y = f.sub("y", x, w).unwrap();
    Program::new(Dialect::Ios18, f.finish(&[y]).unwrap())
}

/// `y = x · w[c]` with a baked BLOBFILE weight `[1, C, 1, 1]`.
fn baked_program() -> (Program, Weights) {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, C, 1, S])).unwrap();
    let w = f
        .blob_constant("w", fp16(&[1, C, 1, 1]), "@model_path/weights/w.bin", 64)
        .unwrap();
    let y = f.mul("y", x, w).unwrap();
    let mut blob = BlobWriter::new();
    let values: Vec<f32> = (0..C).map(|c| 0.25 + c as f32 / 16.0).collect();
    assert_eq!(blob.add_f32_as_f16(&values), 64);
    let mut weights = Weights::new();
    weights.insert("@model_path/weights/w.bin", blob.finish());
    (
        Program::new(Dialect::Ios18, f.finish(&[y]).unwrap()),
        weights,
    )
}

fn ramp(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.37 + seed).sin() * 3.0).round() / 4.0 + seed)
        .collect()
}

/// Runs `program` on `dev` with inputs given by name, returning the outputs in order.
fn run(
    dev: &dyn Device,
    program: &Program,
    weights: &Weights,
    inputs: &[(&str, Vec<f32>)],
) -> ane_runtime::Result<Vec<Vec<f32>>> {
    let k = dev.compile(program, weights)?;
    let info = k.info().clone();
    let ins: Vec<_> = info
        .inputs
        .iter()
        .map(|d| dev.surface(&d.ty.shape, DType::Fp16))
        .collect::<Result<_, _>>()?;
    let outs: Vec<_> = info
        .outputs
        .iter()
        .map(|d| dev.surface(&d.ty.shape, DType::Fp16))
        .collect::<Result<_, _>>()?;
    for (name, values) in inputs {
        let i = info.input_index(name).expect("input exists");
        ins[i].write_f32(values)?;
    }
    let b = k.bind(
        &info
            .inputs
            .iter()
            .map(|d| d.name.as_str())
            .zip(&ins)
            .collect::<Vec<_>>(),
        &info
            .outputs
            .iter()
            .map(|d| d.name.as_str())
            .zip(&outs)
            .collect::<Vec<_>>(),
    )?;
    b.eval()?;
    outs.iter().map(|o| o.read_f32()).collect()
}

fn bind_all(dev: &AneDevice<FakeSys>, k: &Kernel) -> ane_runtime::Binding {
    let info = k.info().clone();
    let mk = |d: &ane_runtime::TensorDesc| dev.surface(&d.ty.shape, DType::Fp16).unwrap();
    let ins: Vec<_> = info.inputs.iter().map(mk).collect();
    let outs: Vec<_> = info.outputs.iter().map(mk).collect();
    k.bind(
        &info
            .inputs
            .iter()
            .map(|d| d.name.as_str())
            .zip(&ins)
            .collect::<Vec<_>>(),
        &info
            .outputs
            .iter()
            .map(|d| d.name.as_str())
            .zip(&outs)
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

fn model_dirs(dev: &AneDevice<FakeSys>) -> Vec<PathBuf> {
    match std::fs::read_dir(dev.sys().temp_root()) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn open_without_the_framework_is_unavailable_and_auto_falls_back_to_cpu() {
    let Err(e) = AneDevice::open() else {
        return; // a Mac with the framework: nothing to check here
    };
    let Error::Unavailable(why) = &e else {
        panic!("expected Unavailable, got {e}")
    };
    assert!(
        why.contains("AppleNeuralEngine.framework not found at"),
        "{why}"
    );
    assert!(why.contains("not macOS on Apple Silicon"), "{why}");
    assert!(matches!(
        ane_runtime::open("ane"),
        Err(Error::Unavailable(_))
    ));
    let auto = ane_runtime::open("auto").unwrap();
    assert_eq!(auto.capabilities().kind, DeviceKind::Cpu);
}

#[test]
fn a_missing_class_is_unavailable_naming_it() {
    let config = FakeConfig {
        missing: Some("_ANEInMemoryModel".into()),
        ..FakeConfig::default()
    };
    let e = AneDevice::new(FakeSys::with_config(config), options(1)).unwrap_err();
    let Error::Unavailable(why) = e else {
        panic!("{e}")
    };
    assert!(why.contains("_ANEInMemoryModel"), "{why}");
}

#[test]
fn capabilities_are_the_neural_engines() {
    let dev = device();
    let c = dev.capabilities();
    assert_eq!(c.kind, DeviceKind::Ane);
    assert_eq!(c.fidelity, Fidelity::Ane);
    assert_eq!(c.binding_order, BindingOrder::Alphabetical);
    assert_eq!(c.surface_dtypes, vec![DType::Fp16]);
    assert_eq!(c.min_surface_bytes, 49_152);
    assert!(matches!(
        dev.surface(&[1, C, 1, S], DType::Fp32),
        Err(Error::Surface(_))
    ));
    let small = dev.surface(&[1, 16, 1, 32], DType::Fp16).unwrap();
    assert_eq!(small.alloc_bytes(), 49_152, "surface() pads to 48 KiB");
}

#[test]
fn compile_load_request_evaluate_unload_in_order_at_qos_21() {
    let dev = device();
    let (p, w) = baked_program();
    let k = dev.compile(&p, &w).unwrap();
    let b = bind_all(&dev, &k);
    b.eval().unwrap();
    drop(b);
    drop(k);
    let calls = dev.sys().calls();
    let kinds: Vec<&str> = calls
        .iter()
        .map(|c| match c {
            Call::NewModel { .. } => "model",
            Call::ModelId { .. } => "id",
            Call::Compile { qos, .. }
            | Call::Load { qos, .. }
            | Call::Unload { qos, .. }
            | Call::Evaluate { qos, .. } => {
                assert_eq!(*qos, QOS);
                assert_eq!(*qos, 21);
                match c {
                    Call::Compile { .. } => "compile",
                    Call::Load { .. } => "load",
                    Call::Unload { .. } => "unload",
                    _ => "evaluate",
                }
            }
            Call::NewSurface { .. } => "surface",
            Call::NewRequest { .. } => "request",
            Call::RealtimeBegin | Call::RealtimeEnd => "realtime",
        })
        .collect();
    assert_eq!(
        kinds,
        ["model", "id", "compile", "load", "surface", "surface", "request", "evaluate", "unload"]
    );
    let Call::NewModel {
        weights, mil_bytes, ..
    } = &calls[0]
    else {
        unreachable!()
    };
    assert_eq!(
        weights.as_deref(),
        Some(&["@model_path/weights/w.bin".to_string()][..])
    );
    assert!(*mil_bytes > 0);
}

#[test]
fn weight_files_land_under_model_path_and_the_temp_dir_goes_with_the_kernel() {
    let dev = device();
    let (p, w) = baked_program();
    let k = dev.compile(&p, &w).unwrap();
    let dirs = model_dirs(&dev);
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    assert_eq!(
        std::fs::read(dir.join("weights/w.bin")).unwrap(),
        &w.get("@model_path/weights/w.bin").unwrap()[..]
    );
    let mil = std::fs::read_to_string(dir.join("model.mil")).unwrap();
    assert_eq!(mil, ane_runtime::mil::print(&p));
    assert!(dir.join("net.plist").exists() && dir.join("data").exists());
    let k2 = dev.compile(&p, &w).unwrap();
    drop(k);
    assert!(
        dir.exists(),
        "a second kernel with the same identity still uses it"
    );
    drop(k2);
    assert!(!dir.exists(), "removed with the last kernel");
    let unloads = dev
        .sys()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Unload { .. }))
        .count();
    assert_eq!(unloads, 2);
}

#[test]
fn a_program_without_weights_passes_an_empty_dictionary_not_nil() {
    let dev = device();
    let _k = dev.compile(&params_program(), &Weights::new()).unwrap();
    let calls = dev.sys().calls();
    assert!(matches!(&calls[0], Call::NewModel { weights: Some(w), .. } if w.is_empty()));
    let dir = &model_dirs(&dev)[0];
    assert!(dir.join("net.plist").exists());
    assert!(!dir.join("data").exists(), "no weights, no `data` file");
}

#[test]
fn the_fake_enforces_the_frameworks_argument_rules() {
    let sys = FakeSys::new();
    assert!(sys.new_model(b"", Some(&[])).is_err(), "empty MIL");
    let nil = sys
        .new_model(b"program(1.3)", None)
        .unwrap_err()
        .to_string();
    assert!(nil.contains("nil"), "{nil}");
    let a = sys.new_surface(49_152).unwrap();
    let b = sys.new_surface(49_152).unwrap();
    let ok = sys.new_request(&[&a], &[0], &[&b], &[0], 0);
    assert!(ok.is_ok());
    for (ins, in_idx, outs, out_idx, proc_) in [
        (vec![&a], vec![0, 1], vec![&b], vec![0], 0),
        (vec![&a], vec![255], vec![&b], vec![0], 0),
        (vec![], vec![], vec![&b], vec![0], 0),
        (vec![&a], vec![0], vec![&b], vec![0], 129),
    ] {
        let ins: Vec<&FakeSurface> = ins;
        let outs: Vec<&FakeSurface> = outs;
        let e = sys
            .new_request(&ins, &in_idx, &outs, &out_idx, proc_)
            .unwrap_err();
        assert!(e.to_string().contains("validate"), "{e}");
    }
}

#[test]
fn compile_error_text_reaches_the_caller_and_nothing_is_left_behind() {
    let config = FakeConfig {
        compile_error: Some("ANECCompile() FAILED: op gelu is not supported".into()),
        ..FakeConfig::default()
    };
    let dev = device_with(config, options(10));
    let e = dev.compile(&params_program(), &Weights::new()).unwrap_err();
    let Error::Device { stage, detail } = &e else {
        panic!("{e}")
    };
    assert_eq!(*stage, "compile");
    assert!(detail.contains("op gelu is not supported"), "{detail}");
    assert!(detail.contains("rule 7"), "{detail}");
    assert!(
        model_dirs(&dev).is_empty(),
        "temp dir removed after a failed compile"
    );
    assert!(!dev
        .sys()
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Load { .. })));
}

#[test]
fn a_failed_load_is_retried_once_after_100_ms() {
    let config = FakeConfig {
        load_failures: 1,
        ..FakeConfig::default()
    };
    let dev = device_with(config, options(10));
    let t = Instant::now();
    let k = dev.compile(&params_program(), &Weights::new());
    assert!(k.is_ok(), "{:?}", k.err());
    assert!(t.elapsed() >= Duration::from_millis(100));
    let loads = dev
        .sys()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Load { .. }))
        .count();
    assert_eq!(loads, 2);
}

#[test]
fn a_load_failing_twice_is_an_error() {
    let config = FakeConfig {
        load_failures: 2,
        ..FakeConfig::default()
    };
    let opts = AneOptions {
        load_retry_delay: Duration::from_millis(1),
        ..options(10)
    };
    let dev = device_with(config, opts);
    let e = dev.compile(&params_program(), &Weights::new()).unwrap_err();
    let Error::Device { stage, detail } = &e else {
        panic!("{e}")
    };
    assert_eq!(*stage, "load");
    assert!(detail.contains("first attempt"), "{detail}");
    let loads = dev
        .sys()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Load { .. }))
        .count();
    assert_eq!(loads, 2, "exactly one retry");
    assert!(model_dirs(&dev).is_empty());
}

#[test]
fn an_exhausted_budget_refuses_before_anything_reaches_the_framework() {
    let dev = device_with(FakeConfig::default(), options(1));
    let _k = dev.compile(&params_program(), &Weights::new()).unwrap();
    dev.sys().clear_calls();
    let e = dev.compile(&params_program(), &Weights::new()).unwrap_err();
    assert!(
        matches!(e, Error::BudgetExhausted { used: 1, limit: 1 }),
        "{e}"
    );
    assert!(dev.sys().calls().is_empty());
    assert_eq!(dev.sys().compiles(), 1);
}

#[test]
fn the_compiler_leak_after_n_compiles_is_a_compile_error() {
    let config = FakeConfig {
        leak_after: Some(2),
        ..FakeConfig::default()
    };
    let dev = device_with(config, options(100));
    let (p, w) = baked_program();
    let _a = dev.compile(&p, &w).unwrap();
    let _b = dev.compile(&params_program(), &Weights::new()).unwrap();
    let e = dev.compile(&p, &w).unwrap_err();
    let Error::Device { stage, detail } = &e else {
        panic!("{e}")
    };
    assert_eq!(*stage, "compile");
    assert!(
        detail.contains("ANECCompile() FAILED") && detail.contains("rule 11"),
        "{detail}"
    );
}

/// Named files of one cache entry.
type Files = Vec<(String, Vec<u8>)>;

#[derive(Debug, Default)]
struct MemoryCache(Mutex<HashMap<CacheKey, Files>>);

impl ArtifactCache for MemoryCache {
    fn get(&self, key: &CacheKey) -> Option<Files> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn put(&self, key: &CacheKey, files: &[(String, Vec<u8>)]) -> ane_runtime::Result<()> {
        self.0.lock().unwrap().insert(key.clone(), files.to_vec());
        Ok(())
    }
}

#[test]
fn a_cache_hit_skips_compile_but_still_counts_against_the_budget() {
    let budget = Arc::new(CompileBudget::new(10));
    let cache = Arc::new(MemoryCache::default());
    let opts = AneOptions {
        cache: cache.clone(),
        ..AneOptions::new(budget.clone())
    };
    let dev = device_with(FakeConfig::default(), opts);
    let (p, w) = baked_program();
    drop(dev.compile(&p, &w).unwrap());
    let stored = cache.0.lock().unwrap().values().next().cloned().unwrap();
    let names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["net.plist", "data"]);
    dev.sys().clear_calls();
    let k = dev.compile(&p, &w).unwrap();
    let calls = dev.sys().calls();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Compile { .. })),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| matches!(c, Call::Load { .. })));
    assert_eq!(budget.used(), 2);
    assert_eq!(dev.sys().compiles(), 1);
    let b = bind_all(&dev, &k);
    b.eval().unwrap();

    let mut w2 = Weights::new();
    w2.insert("@model_path/weights/w.bin", {
        let mut blob = BlobWriter::new();
        blob.add_f32_as_f16(&[1.0; C]);
        blob.finish()
    });
    drop(dev.compile(&p, &w2).unwrap());
    assert_eq!(
        dev.sys().compiles(),
        2,
        "other weights, other key: compiled"
    );
}

#[test]
fn status_0x1d_at_eval_is_a_typed_error_naming_rules_1_to_3() {
    let config = FakeConfig {
        eval_status: Some(0x1d),
        ..FakeConfig::default()
    };
    let dev = device_with(config, options(10));
    let k = dev.compile(&params_program(), &Weights::new()).unwrap();
    let b = bind_all(&dev, &k);
    let e = b.eval().unwrap_err();
    let Error::Device { stage, detail } = &e else {
        panic!("{e}")
    };
    assert_eq!(*stage, "eval");
    assert!(
        detail.contains("0x1d") && detail.contains("rules 1-3"),
        "{detail}"
    );
}

#[test]
fn the_request_lists_inputs_alphabetically_never_in_declaration_order() {
    let dev = device();
    let p = params_program();
    let k = dev.compile(&p, &Weights::new()).unwrap();
    assert_eq!(k.info().inputs[0].name, "x", "declared x first");
    let x = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let w = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let y = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let numbers: Vec<u64> = dev
        .sys()
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::NewSurface { surface, .. } => Some(*surface),
            _ => None,
        })
        .collect();
    let (x_n, w_n, y_n) = (numbers[0], numbers[1], numbers[2]);
    for b in [
        k.bind(&[("x", &x), ("W", &w)], &[("y", &y)]).unwrap(),
        k.bind(&[("W", &w), ("x", &x)], &[("y", &y)]).unwrap(),
        k.bind_slots(&[&w, &x], &[&y]).unwrap(),
    ] {
        drop(b);
        let last = dev
            .sys()
            .calls()
            .into_iter()
            .rev()
            .find(|c| matches!(c, Call::NewRequest { .. }))
            .unwrap();
        assert_eq!(
            last,
            Call::NewRequest {
                inputs: vec![w_n, x_n],
                input_indices: vec![0, 1],
                outputs: vec![y_n],
                output_indices: vec![0],
                procedure: 0,
            }
        );
    }
}

#[test]
fn small_or_unequal_surfaces_are_refused_before_the_framework_sees_them() {
    let dev = device();
    let mut f = FunctionBuilder::new("main");
    let a = f.input("a", fp16(&[1, 16, 1, 32])).unwrap();
    let y = f.mul("y", a, a).unwrap();
    let p = Program::new(Dialect::Ios18, f.finish(&[y]).unwrap());
    let k = dev.compile(&p, &Weights::new()).unwrap();
    let tiny_in = dev
        .surface_with_alloc(&[1, 16, 1, 32], DType::Fp16, 1024)
        .unwrap();
    let out = dev.surface(&[1, 16, 1, 32], DType::Fp16).unwrap();
    dev.sys().clear_calls();
    let e = k.bind(&[("a", &tiny_in)], &[("y", &out)]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Rule {
                rule: AneRule::MinSurfaceSize,
                ..
            }
        ),
        "{e}"
    );

    let k2 = dev.compile(&params_program(), &Weights::new()).unwrap();
    let x = dev
        .surface_with_alloc(&[1, C, 1, S], DType::Fp16, 65_536)
        .unwrap();
    let w = dev
        .surface_with_alloc(&[1, C, 1, S], DType::Fp16, 131_072)
        .unwrap();
    let y = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let e = k2.bind(&[("x", &x), ("W", &w)], &[("y", &y)]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Rule {
                rule: AneRule::EqualInputSizes,
                ..
            }
        ),
        "{e}"
    );
    assert!(!dev
        .sys()
        .calls()
        .iter()
        .any(|c| matches!(c, Call::NewRequest { .. })));
}

#[test]
fn surfaces_from_another_device_are_refused() {
    let dev = device();
    let k = dev.compile(&params_program(), &Weights::new()).unwrap();
    let sim = ane_runtime::open("ane-sim").unwrap();
    let x = sim.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let w = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let y = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let e = k.bind(&[("x", &x), ("W", &w)], &[("y", &y)]).unwrap_err();
    assert!(e.to_string().contains("not an IOSurface"), "{e}");
}

#[test]
fn one_request_per_binding_reused_by_every_eval() {
    let dev = device();
    let k = dev.compile(&params_program(), &Weights::new()).unwrap();
    let b = bind_all(&dev, &k);
    for _ in 0..3 {
        b.eval().unwrap();
    }
    let calls = dev.sys().calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::NewRequest { .. }))
            .count(),
        1
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Evaluate { .. }))
            .count(),
        3
    );
}

#[test]
fn host_locks_use_iosurface_locks_and_block_eval() {
    let dev = device();
    let k = dev.compile(&params_program(), &Weights::new()).unwrap();
    let x = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let w = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let y = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    let b = k.bind(&[("x", &x), ("W", &w)], &[("y", &y)]).unwrap();
    let guard = y.read::<half::f16>().unwrap();
    let e = b.eval().unwrap_err();
    assert!(matches!(e, Error::SurfaceBusy(_)), "{e}");
    drop(guard);
    b.eval().unwrap();
}

#[derive(Debug, Default)]
struct CountingPool {
    free: Mutex<Vec<(usize, FakeSurface)>>,
    takes: Mutex<usize>,
}

impl SurfaceRecycler<FakeSurface> for CountingPool {
    fn take(&self, bytes: usize) -> Option<FakeSurface> {
        let mut free = self.free.lock().unwrap();
        let i = free.iter().position(|(b, _)| *b == bytes)?;
        *self.takes.lock().unwrap() += 1;
        Some(free.swap_remove(i).1)
    }
    fn give(&self, bytes: usize, buffer: FakeSurface) {
        self.free.lock().unwrap().push((bytes, buffer));
    }
}

#[test]
fn surfaces_come_from_and_return_to_the_pool_zeroed() {
    let pool = Arc::new(CountingPool::default());
    let dev = AneDevice::with_pool(FakeSys::new(), options(1), pool.clone()).unwrap();
    let s = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    s.write_f32(&vec![1.5; C * S]).unwrap();
    drop(s);
    assert_eq!(pool.free.lock().unwrap().len(), 1);
    let again = dev.surface(&[1, C, 1, S], DType::Fp16).unwrap();
    assert_eq!(*pool.takes.lock().unwrap(), 1);
    assert!(again.read_f32().unwrap().iter().all(|&v| v == 0.0));
    let made = dev
        .sys()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::NewSurface { .. }))
        .count();
    assert_eq!(made, 1);
}

#[test]
fn realtime_is_active_where_the_client_exists_and_a_reason_where_not() {
    let dev = device();
    assert_eq!(dev.realtime_begin(), Realtime::Active);
    assert_eq!(dev.realtime_end(), Realtime::Active);
    assert_eq!(dev.sys().calls(), [Call::RealtimeBegin, Call::RealtimeEnd]);
    let none = device_with(
        FakeConfig {
            realtime: false,
            ..FakeConfig::default()
        },
        options(1),
    );
    let Realtime::Unavailable(why) = none.realtime_begin() else {
        panic!()
    };
    assert!(why.contains("_ANEClient"), "{why}");
}

// ---- numbers: the fake evaluates on the CPU device, so results equal ane-sim's exactly ----

fn same_as_ane_sim(program: &Program, weights: &Weights, inputs: &[(&str, Vec<f32>)]) {
    let sim = ane_runtime::open("ane-sim").unwrap();
    let want = run(sim.as_ref(), program, weights, inputs).unwrap();
    let got = run(&device(), program, weights, inputs).unwrap();
    assert_eq!(got, want);
}

#[test]
fn params_kernel_through_the_driver_matches_ane_sim() {
    let p = params_program();
    let x = ramp(C * S, 0.5);
    let w = ramp(C * S, -1.25);
    let sim = ane_runtime::open("ane-sim").unwrap();
    let got = run(
        sim.as_ref(),
        &p,
        &Weights::new(),
        &[("x", x.clone()), ("W", w.clone())],
    )
    .unwrap();
    for i in [0, 7, C * S - 1] {
        assert!((got[0][i] - (x[i] - w[i])).abs() < 1e-2, "y = x - W at {i}");
    }
    same_as_ane_sim(&p, &Weights::new(), &[("x", x), ("W", w)]);
}

#[test]
fn baked_kernel_through_the_driver_matches_ane_sim() {
    let (p, w) = baked_program();
    same_as_ane_sim(&p, &w, &[("x", ramp(C * S, 0.75))]);
}

#[test]
fn packed_kernel_through_the_driver_matches_ane_sim() {
    let (ic, oc, seq) = (64, 64, 448);
    let p = samples::dynamic_matmul_packed(ic, oc, seq).unwrap();
    same_as_ane_sim(&p, &Weights::new(), &[("x", ramp(ic * (seq + oc), 0.1))]);
}
