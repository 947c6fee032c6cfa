//! A fake [`AneSys`] that models the framework's observable behaviour, so the whole driver runs
//! and is tested on any machine (IREE's null driver is the model, but this one computes).
//!
//! What it models, from `reference/ane-upstream.md` §1 and `ane-pitfalls.md` §A:
//! - every message is recorded ([`FakeSys::calls`]), so tests can check the sequence
//!   descriptor → compile → load → request → evaluate → unload and the QoS of each;
//! - the argument rules: the MIL must be non-empty UTF-8 text; a nil weights dictionary gives
//!   a nil model (rule 13); a request needs non-empty input and output arrays whose counts
//!   equal their index-array counts, at most 255 buffers a side, every index < 255 and a
//!   procedure index <= 128 (`_ANERequest validate`);
//! - compile resolves `@model_path` to `<temp root>/<hexStringIdentifier>` and fails when a
//!   BLOBFILE is not there; it writes `net.plist` (the MIL) and `data` (the last weight blob)
//!   there, as the framework does; load needs `net.plist` (compiled or restored from a cache)
//!   and reads the weights then;
//! - the hardware rules at eval: a surface under 48 KiB or unequal input (or output)
//!   allocation sizes fail with status 0x1d; slot `i` of a request is the `i`-th input in
//!   alphabetical order of the MIL names (rule 4), so a driver that binds in declaration order
//!   gets swapped data here just as on hardware; a CPU-locked surface is refused;
//! - failures on demand ([`FakeConfig`]): a missing class, compile failing after N compiles
//!   (the ~119 leak), compile error text, load failing N times, eval failing with a status.
//!
//! Evaluation hands the program to the CPU device in Neural Engine fidelity
//! (`CpuDevice::new(Fidelity::Ane)`): the request's surface bytes are copied into CPU
//! surfaces, the CPU kernel runs, and the results are copied back. So a kernel evaluated
//! through the ANE driver on the fake gives exactly the `ane-sim` numbers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ane_mil::{Literal, Program};
use sha2::{Digest, Sha256};

use super::backend::{AneSys, SysError, WeightFile};
use super::errors::STATUS_PROGRAM_INFERENCE;
use crate::cpu::{CpuDevice, HostMemory};
use crate::device::{Device, Fidelity};
use crate::kernel::{slot_order, Binding, Kernel};
use crate::rules::MIN_SURFACE_BYTES;
use crate::surface::{Surface, SurfaceMemory};
use crate::weights::Weights;
use crate::BindingOrder;

/// Most buffers a request side may hold, and the bound on symbol indices.
const MAX_BUFFERS: usize = 255;
/// Largest procedure index `_ANERequest validate` accepts.
const MAX_PROCEDURE: usize = 128;

/// Failures the fake produces on demand. The default is a healthy machine with realtime.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// A class or selector to report missing from `probe` (e.g. `_ANEInMemoryModel`).
    pub missing: Option<String>,
    /// Compile fails once this many compiles have succeeded (the ~119 leak).
    pub leak_after: Option<usize>,
    /// Every compile fails with this text.
    pub compile_error: Option<String>,
    /// The next this-many loads fail (`usize::MAX`: all of them).
    pub load_failures: usize,
    /// Every eval fails with this hardware status (e.g. `0x1d`).
    pub eval_status: Option<i64>,
    /// Whether `_ANEClient` realtime calls exist.
    pub realtime: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            missing: None,
            leak_after: None,
            compile_error: None,
            load_failures: 0,
            eval_status: None,
            realtime: true,
        }
    }
}

/// One recorded message. Models and surfaces are numbered from 1 in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Descriptor + `inMemoryModelWithDescriptor:`; the weight keys (`None` = nil dict).
    NewModel {
        /// Model number.
        model: u64,
        /// Bytes of MIL text.
        mil_bytes: usize,
        /// The weights dictionary's keys.
        weights: Option<Vec<String>>,
    },
    /// `hexStringIdentifier`.
    ModelId {
        /// Model number.
        model: u64,
    },
    /// `compileWithQoS:options:error:`.
    Compile {
        /// Model number.
        model: u64,
        /// QoS.
        qos: u32,
    },
    /// `loadWithQoS:options:error:`.
    Load {
        /// Model number.
        model: u64,
        /// QoS.
        qos: u32,
    },
    /// `unloadWithQoS:error:`.
    Unload {
        /// Model number.
        model: u64,
        /// QoS.
        qos: u32,
    },
    /// `IOSurfaceCreate`.
    NewSurface {
        /// Surface number.
        surface: u64,
        /// Allocation size.
        bytes: usize,
    },
    /// `requestWithInputs:inputIndices:outputs:outputIndices:…`.
    NewRequest {
        /// Input surface numbers, in request order.
        inputs: Vec<u64>,
        /// Input symbol indices.
        input_indices: Vec<usize>,
        /// Output surface numbers, in request order.
        outputs: Vec<u64>,
        /// Output symbol indices.
        output_indices: Vec<usize>,
        /// Procedure index.
        procedure: usize,
    },
    /// `evaluateWithQoS:options:request:error:`.
    Evaluate {
        /// Model number.
        model: u64,
        /// QoS.
        qos: u32,
    },
    /// `beginRealTimeTask`.
    RealtimeBegin,
    /// `endRealTimeTask`.
    RealtimeEnd,
}

#[derive(Debug)]
struct State {
    config: FakeConfig,
    calls: Vec<Call>,
    compiles: usize,
}

/// The fake framework; see the module docs.
#[derive(Debug)]
pub struct FakeSys {
    state: Mutex<State>,
    root: PathBuf,
    cpu: CpuDevice,
    next_id: AtomicU64,
}

impl Default for FakeSys {
    fn default() -> Self {
        FakeSys::new()
    }
}

impl FakeSys {
    /// A healthy fake with its own temp root.
    pub fn new() -> Self {
        FakeSys::with_config(FakeConfig::default())
    }

    /// A fake with the given failures.
    pub fn with_config(config: FakeConfig) -> Self {
        static ROOTS: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "ane-fake-{}-{}",
            std::process::id(),
            ROOTS.fetch_add(1, Ordering::Relaxed)
        ));
        FakeSys {
            state: Mutex::new(State {
                config,
                calls: Vec::new(),
                compiles: 0,
            }),
            root,
            cpu: CpuDevice::new(Fidelity::Ane),
            next_id: AtomicU64::new(1),
        }
    }

    /// Changes the configured failures.
    pub fn configure(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.state().config)
    }

    /// Every message so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the recorded messages.
    pub fn clear_calls(&self) {
        self.state().calls.clear()
    }

    /// Compiles attempted so far (failed ones included).
    pub fn compiles(&self) -> usize {
        self.state().compiles
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only interrupts a test; keep its data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, call: Call) {
        self.state().calls.push(call)
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for FakeSys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A fake `_ANEInMemoryModel`.
#[derive(Debug)]
pub struct FakeModel {
    number: u64,
    mil: String,
    hex: String,
    dir: PathBuf,
    has_weights: bool,
    state: Mutex<ModelState>,
}

#[derive(Debug, Default)]
struct ModelState {
    loaded: bool,
    program: Option<Program>,
    weights: Weights,
    kernel: Option<Kernel>,
}

impl FakeModel {
    fn state(&self) -> MutexGuard<'_, ModelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fake IOSurface: 64-byte aligned host memory plus a CPU-lock count.
#[derive(Debug, Clone)]
pub struct FakeSurface(Arc<FakeBuffer>);

#[derive(Debug)]
struct FakeBuffer {
    number: u64,
    mem: HostMemory,
    cpu_locks: AtomicIsize,
}

impl FakeSurface {
    /// The surface's number (as in [`Call::NewSurface`]).
    pub fn number(&self) -> u64 {
        self.0.number
    }
}

/// A fake `_ANERequest`, with the CPU binding made on its first evaluation.
#[derive(Debug)]
pub struct FakeRequest {
    inputs: Vec<FakeSurface>,
    outputs: Vec<FakeSurface>,
    cpu: Mutex<Option<CpuBinding>>,
}

#[derive(Debug)]
struct CpuBinding {
    model: u64,
    binding: Binding,
    inputs: Vec<Surface>,
    outputs: Vec<Surface>,
}

fn hex8(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blob_paths(program: &Program) -> Vec<String> {
    let mut out: Vec<String> = program
        .functions
        .iter()
        .flat_map(|f| &f.body)
        .flat_map(|s| &s.attrs)
        .filter_map(|(_, l)| match l {
            Literal::BlobFile { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn model_file(dir: &Path, path: &str) -> PathBuf {
    dir.join(
        path.strip_prefix(crate::weights::MODEL_PATH)
            .unwrap_or(path),
    )
}

fn status(code: i64) -> SysError {
    SysError::Failed {
        code: Some(code),
        message: format!(
            "ANEProgramProcessRequestDirect() Failed with status={code:#x} : Program Inference error"
        ),
    }
}

fn base_of(s: &FakeSurface, n: usize) -> Result<*mut u8, SysError> {
    if s.0.mem.len() < n {
        return Err(SysError::failed(format!(
            "a {}-byte surface cannot hold {n} bytes of tensor data",
            s.0.mem.len()
        )));
    }
    s.0.mem
        .lock(true)
        .map_err(|e| SysError::failed(e.to_string()))
}

impl FakeSys {
    fn cpu_binding(
        &self,
        model: &FakeModel,
        request: &FakeRequest,
    ) -> Result<CpuBinding, SysError> {
        let mut st = model.state();
        if st.kernel.is_none() {
            let program = st
                .program
                .clone()
                .ok_or_else(|| SysError::failed("model has no program"))?;
            let kernel = self
                .cpu
                .compile(&program, &st.weights)
                .map_err(|e| SysError::failed(format!("CPU executor: {e}")))?;
            st.kernel = Some(kernel);
        }
        let kernel = st
            .kernel
            .clone()
            .ok_or_else(|| SysError::failed("model has no kernel"))?;
        drop(st);
        let info = kernel.info();
        if request.inputs.len() != info.inputs.len() || request.outputs.len() != info.outputs.len()
        {
            return Err(status(STATUS_PROGRAM_INFERENCE).with_context(&format!(
                "the request has {} inputs and {} outputs, the program {} and {}",
                request.inputs.len(),
                request.outputs.len(),
                info.inputs.len(),
                info.outputs.len()
            )));
        }
        let make = |descs: &[crate::TensorDesc], set: &[FakeSurface]| {
            slot_order(descs, BindingOrder::Alphabetical)
                .into_iter()
                .zip(set)
                .map(|(d, s)| {
                    self.cpu
                        .surface_with_alloc(&descs[d].ty.shape, descs[d].ty.dtype, s.0.mem.len())
                        .map_err(|e| SysError::failed(format!("CPU surface: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let inputs = make(&info.inputs, &request.inputs)?;
        let outputs = make(&info.outputs, &request.outputs)?;
        let binding = kernel
            .bind_slots(
                &inputs.iter().collect::<Vec<_>>(),
                &outputs.iter().collect::<Vec<_>>(),
            )
            .map_err(|e| SysError::failed(format!("CPU binding: {e}")))?;
        Ok(CpuBinding {
            model: model.number,
            binding,
            inputs,
            outputs,
        })
    }
}

impl AneSys for FakeSys {
    type Model = FakeModel;
    type Surface = FakeSurface;
    type Request = FakeRequest;

    fn probe(&self) -> Result<(), SysError> {
        match &self.state().config.missing {
            Some(name) => Err(SysError::Missing(format!(
                "class {name} is not registered (AppleNeuralEngine.framework changed?)"
            ))),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        "fake Neural Engine (the CPU device behind the ANE driver)".into()
    }

    fn os_build(&self) -> String {
        "fake-1".into()
    }

    fn temp_root(&self) -> PathBuf {
        self.root.clone()
    }

    fn new_model(&self, mil: &[u8], weights: Option<&[WeightFile]>) -> Result<FakeModel, SysError> {
        let number = self.id();
        self.record(Call::NewModel {
            model: number,
            mil_bytes: mil.len(),
            weights: weights.map(|w| w.iter().map(|(k, _)| k.clone()).collect()),
        });
        let Some(weights) = weights else {
            return Err(SysError::failed(
                "modelWithMILText:weights:optionsPlist: returned nil (the weights dictionary was nil; pass @{})",
            ));
        };
        let mil = match std::str::from_utf8(mil) {
            Ok(t) if !t.is_empty() => t.to_string(),
            _ => {
                return Err(SysError::failed(
                    "modelWithMILText:weights:optionsPlist: returned nil (MIL must be UTF-8 text as NSData)",
                ))
            }
        };
        let mut sorted: Vec<&WeightFile> = weights.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let wbytes: Vec<u8> = sorted.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        let hex = format!("{}_{}_0", hex8(mil.as_bytes()), hex8(&wbytes));
        Ok(FakeModel {
            number,
            dir: self.root.join(&hex),
            hex,
            mil,
            has_weights: !weights.is_empty(),
            state: Mutex::default(),
        })
    }

    fn model_id(&self, model: &FakeModel) -> Result<String, SysError> {
        self.record(Call::ModelId {
            model: model.number,
        });
        Ok(model.hex.clone())
    }

    fn compile(&self, model: &FakeModel, qos: u32) -> Result<(), SysError> {
        let (leak, error, n) = {
            let mut st = self.state();
            st.calls.push(Call::Compile {
                model: model.number,
                qos,
            });
            st.compiles += 1;
            (
                st.config.leak_after,
                st.config.compile_error.clone(),
                st.compiles,
            )
        };
        if leak.is_some_and(|limit| n > limit) {
            return Err(SysError::failed(format!(
                "ANECCompile() FAILED: compiler resources exhausted after {} compiles in this process",
                n - 1
            )));
        }
        if let Some(text) = error {
            return Err(SysError::failed(text));
        }
        let program = ane_mil::parse(&model.mil)
            .map_err(|e| SysError::failed(format!("InvalidMILProgram: {e}")))?;
        let mut last_blob = None;
        for path in blob_paths(&program) {
            let file = model_file(&model.dir, &path);
            let bytes = std::fs::read(&file).map_err(|e| {
                SysError::failed(format!(
                    "ANECCompile() FAILED: cannot read {path} at {}: {e}",
                    file.display()
                ))
            })?;
            last_blob = Some(bytes);
        }
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(model.dir.join(name), bytes)
                .map_err(|e| SysError::failed(format!("saveModelFiles: {e}")))
        };
        write("net.plist", model.mil.as_bytes())?;
        if let (true, Some(b)) = (model.has_weights, last_blob) {
            write("data", &b)?;
        }
        Ok(())
    }

    fn load(&self, model: &FakeModel, qos: u32) -> Result<(), SysError> {
        {
            let mut st = self.state();
            st.calls.push(Call::Load {
                model: model.number,
                qos,
            });
            if st.config.load_failures > 0 {
                st.config.load_failures = st.config.load_failures.saturating_sub(1);
                return Err(SysError::Failed {
                    code: Some(5),
                    message: "loadWithQoS: ANEProgramLoad failed (fake)".into(),
                });
            }
        }
        let text = std::fs::read_to_string(model.dir.join("net.plist")).map_err(|e| {
            SysError::failed(format!(
                "loadWithQoS: the model is not compiled (no net.plist: {e})"
            ))
        })?;
        let program = ane_mil::parse(&text)
            .map_err(|e| SysError::failed(format!("InvalidMILProgram: {e}")))?;
        let mut weights = Weights::new();
        for path in blob_paths(&program) {
            let bytes = std::fs::read(model_file(&model.dir, &path))
                .map_err(|e| SysError::failed(format!("loadWithQoS: {path}: {e}")))?;
            weights.insert(path, bytes);
        }
        let mut st = model.state();
        st.program = Some(program);
        st.weights = weights;
        st.kernel = None;
        st.loaded = true;
        Ok(())
    }

    fn unload(&self, model: &FakeModel, qos: u32) -> Result<(), SysError> {
        self.record(Call::Unload {
            model: model.number,
            qos,
        });
        let mut st = model.state();
        if !st.loaded {
            return Err(SysError::failed("unloadWithQoS: the model is not loaded"));
        }
        st.loaded = false;
        Ok(())
    }

    fn new_surface(&self, bytes: usize) -> Result<FakeSurface, SysError> {
        let number = self.id();
        self.record(Call::NewSurface {
            surface: number,
            bytes,
        });
        let mem = HostMemory::new(bytes).map_err(|e| SysError::failed(e.to_string()))?;
        Ok(FakeSurface(Arc::new(FakeBuffer {
            number,
            mem,
            cpu_locks: AtomicIsize::new(0),
        })))
    }

    fn surface_len(&self, surface: &FakeSurface) -> usize {
        surface.0.mem.len()
    }

    fn lock(&self, surface: &FakeSurface, write: bool) -> Result<*mut u8, SysError> {
        surface.0.cpu_locks.fetch_add(1, Ordering::AcqRel);
        surface
            .0
            .mem
            .lock(write)
            .map_err(|e| SysError::failed(e.to_string()))
    }

    fn unlock(&self, surface: &FakeSurface, _write: bool) {
        surface.0.cpu_locks.fetch_sub(1, Ordering::AcqRel);
    }

    fn base_address(&self, surface: &FakeSurface) -> *mut u8 {
        surface.0.mem.lock(false).unwrap_or(std::ptr::null_mut())
    }

    fn new_request(
        &self,
        inputs: &[&FakeSurface],
        input_indices: &[usize],
        outputs: &[&FakeSurface],
        output_indices: &[usize],
        procedure: usize,
    ) -> Result<FakeRequest, SysError> {
        self.record(Call::NewRequest {
            inputs: inputs.iter().map(|s| s.number()).collect(),
            input_indices: input_indices.to_vec(),
            outputs: outputs.iter().map(|s| s.number()).collect(),
            output_indices: output_indices.to_vec(),
            procedure,
        });
        let invalid = |why: String| {
            Err(SysError::failed(format!(
                "requestWithInputs:… returned nil (validate: {why})"
            )))
        };
        for (side, set, idx) in [
            ("input", inputs.len(), input_indices),
            ("output", outputs.len(), output_indices),
        ] {
            if set == 0 || set > MAX_BUFFERS {
                return invalid(format!("{set} {side} buffers (1 to {MAX_BUFFERS})"));
            }
            if set != idx.len() {
                return invalid(format!("{set} {side} buffers but {} indices", idx.len()));
            }
            if let Some(i) = idx.iter().find(|&&i| i >= MAX_BUFFERS) {
                return invalid(format!("{side} index {i} >= {MAX_BUFFERS}"));
            }
        }
        if procedure > MAX_PROCEDURE {
            return invalid(format!("procedure index {procedure} > {MAX_PROCEDURE}"));
        }
        Ok(FakeRequest {
            inputs: inputs.iter().map(|&s| s.clone()).collect(),
            outputs: outputs.iter().map(|&s| s.clone()).collect(),
            cpu: Mutex::new(None),
        })
    }

    fn evaluate(&self, model: &FakeModel, request: &FakeRequest, qos: u32) -> Result<(), SysError> {
        let forced = {
            let mut st = self.state();
            st.calls.push(Call::Evaluate {
                model: model.number,
                qos,
            });
            st.config.eval_status
        };
        if !model.state().loaded {
            return Err(SysError::failed("evaluateWithQoS: the model is not loaded"));
        }
        if let Some(code) = forced {
            return Err(status(code));
        }
        for set in [&request.inputs, &request.outputs] {
            let first = set.first().map_or(0, |s| s.0.mem.len());
            if set
                .iter()
                .any(|s| s.0.mem.len() < MIN_SURFACE_BYTES || s.0.mem.len() != first)
            {
                return Err(status(STATUS_PROGRAM_INFERENCE));
            }
        }
        if request
            .inputs
            .iter()
            .chain(&request.outputs)
            .any(|s| s.0.cpu_locks.load(Ordering::Acquire) != 0)
        {
            return Err(SysError::failed(
                "evaluateWithQoS: a surface is CPU-locked (IOSurfaceLock) during evaluation",
            ));
        }
        let mut slot = request.cpu.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|c| c.model != model.number) {
            *slot = Some(self.cpu_binding(model, request)?);
        }
        let Some(cpu) = slot.as_ref() else {
            return Err(SysError::failed("no CPU binding"));
        };
        let copy_err = |e: crate::Error| SysError::failed(format!("CPU surface copy: {e}"));
        for (fake, s) in request.inputs.iter().zip(&cpu.inputs) {
            let n = s.data_bytes();
            let src = base_of(fake, n)?;
            let mut lock = s.lock_write("fake eval").map_err(copy_err)?;
            // SAFETY: `src` addresses at least `n` bytes of the fake surface (checked in
            // `base_of`); the driver holds every Surface lock of this request while it
            // evaluates, so no host guard aliases that memory.
            lock.bytes_mut(n)
                .copy_from_slice(unsafe { std::slice::from_raw_parts(src, n) });
        }
        cpu.binding
            .eval()
            .map_err(|e| SysError::failed(format!("CPU executor: {e}")))?;
        for (fake, s) in request.outputs.iter().zip(&cpu.outputs) {
            let n = s.data_bytes();
            let dst = base_of(fake, n)?;
            let lock = s.lock_read("fake eval").map_err(copy_err)?;
            // SAFETY: `dst` addresses at least `n` writable bytes (checked in `base_of`) that
            // only the device touches now (the driver holds the write lock of this output);
            // the CPU surface is a different allocation.
            unsafe { std::ptr::copy_nonoverlapping(lock.bytes(n).as_ptr(), dst, n) };
        }
        Ok(())
    }

    fn realtime_begin(&self) -> Result<(), String> {
        self.realtime(Call::RealtimeBegin)
    }

    fn realtime_end(&self) -> Result<(), String> {
        self.realtime(Call::RealtimeEnd)
    }
}

impl FakeSys {
    fn realtime(&self, call: Call) -> Result<(), String> {
        let mut st = self.state();
        if !st.config.realtime {
            return Err("class _ANEClient is not registered (fake without realtime)".into());
        }
        st.calls.push(call);
        Ok(())
    }
}
