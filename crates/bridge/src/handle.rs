//! Kernel handles: compiling a MIL text into a bound kernel, the registry of live handles, and
//! the I/O on a handle's tensors, all in safe Rust over slices.
//!
//! A handle's tensors are in the caller's view: inputs `0..n-1` and weights `0..m-1` are the
//! MIL function's parameters in declaration order, outputs its returned values in order.
//! Surfaces are bound by MIL name ([`ane_runtime::Kernel::bind`]), so the runtime applies the device's slot
//! order (alphabetical on the Neural Engine and `ane-sim`). Every input of one handle gets one
//! allocation size, at least the device's minimum, and so does every output (rules 1–3).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ane_mil::TensorType;
use ane_runtime::cache::CacheKey;
use ane_runtime::{Binding, Device, Feed, Surface, Weights};

use crate::device::{self, Opened};
use crate::error::{BridgeError, Result};

/// One caller-visible tensor of a handle.
#[derive(Debug, Clone)]
struct Port {
    name: String,
    ty: TensorType,
    bytes: usize,
}

/// A compiled, bound kernel; see the module docs.
#[derive(Debug)]
pub struct Handle {
    device: Arc<dyn Device>,
    binding: Binding,
    inputs: Vec<Port>,
    weights: Vec<Port>,
    outputs: Vec<Port>,
    input_alloc: usize,
    /// Per parameter (inputs then weights): the surface is another handle's output (copy_io).
    aliased: Vec<bool>,
}

/// What to compile.
#[derive(Debug)]
pub struct Spec<'a> {
    /// MIL text.
    pub mil: &'a str,
    /// BLOBFILE files as (path as written in the MIL, bytes).
    pub files: Vec<(String, &'a [u8])>,
    /// Byte size of each activation input, declaration order.
    pub input_sizes: &'a [usize],
    /// Byte size of each weight parameter (after the inputs), declaration order.
    pub weight_sizes: &'a [usize],
    /// Byte size of each output, return order.
    pub output_sizes: &'a [usize],
}

/// Bytes of a tensor type (`None` when it overflows or has no fixed element size).
fn type_bytes(ty: &TensorType) -> Option<usize> {
    ty.num_elements()?.checked_mul(ty.dtype.size_bytes()?)
}

fn ports(
    what: &str,
    decl: &[(String, TensorType)],
    sizes: &[usize],
    first: usize,
) -> Result<Vec<Port>> {
    decl.iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, ((name, ty), &given))| {
            let bytes = type_bytes(ty).ok_or_else(|| {
                BridgeError::Mismatch(format!("{what} {i} `{name}` has no fixed size ({ty})"))
            })?;
            if bytes != given {
                return Err(BridgeError::Mismatch(format!(
                    "{what} {i} (MIL parameter {} `{name}`, {ty}) is {bytes} bytes, but {given} were given",
                    first + i
                )));
            }
            Ok(Port {
                name: name.clone(),
                ty: ty.clone(),
                bytes,
            })
        })
        .collect()
}

impl Handle {
    /// Compiles `spec` on the open device (opening it first if needed), or reuses the kernel
    /// the device's cache holds for the same MIL text and weight bytes.
    pub fn compile(spec: &Spec<'_>) -> Result<Handle> {
        Handle::compile_on(&device::current()?, spec)
    }

    /// [`Handle::compile`] on a given device (tests drive the `ane` driver over its fake).
    pub fn compile_on(opened: &Opened, spec: &Spec<'_>) -> Result<Handle> {
        let program = ane_mil::parse(spec.mil)?;
        let f = program
            .main()
            .ok_or(BridgeError::Runtime(ane_runtime::Error::NoMain))?;
        let params: Vec<(String, TensorType)> = f
            .params
            .iter()
            .map(|p| (p.name.clone(), p.ty.clone()))
            .collect();
        let (n, m) = (spec.input_sizes.len(), spec.weight_sizes.len());
        if n + m != params.len() {
            let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
            return Err(BridgeError::Mismatch(format!(
                "the MIL's main declares {} parameters ({}), but {n} inputs and {m} weights were given",
                params.len(),
                names.join(", ")
            )));
        }
        let mut returns = Vec::new();
        for (name, ty) in f.returns.iter().zip(f.return_types()) {
            let ty = ty.ok_or_else(|| {
                BridgeError::Mismatch(format!("returned value `{name}` has no type"))
            })?;
            returns.push((name.clone(), ty.clone()));
        }
        if spec.output_sizes.len() != returns.len() {
            return Err(BridgeError::Mismatch(format!(
                "the MIL's main returns {} values, but {} output sizes were given",
                returns.len(),
                spec.output_sizes.len()
            )));
        }
        let inputs = ports("input", &params[..n], spec.input_sizes, 0)?;
        let weights = ports("weight", &params[n..], spec.weight_sizes, n)?;
        let outputs = ports("output", &returns, spec.output_sizes, 0)?;

        let mut files = Weights::new();
        for (path, bytes) in &spec.files {
            files.insert(path.clone(), bytes.to_vec());
        }
        let weights_hash = files.content_hash(spec.files.iter().map(|(p, _)| p.as_str()))?;
        let dev = opened.device.clone();
        let kind = dev.capabilities().kind.name();
        let key = CacheKey::new(spec.mil, weights_hash, kind, "", "");
        let kernel = match opened.memo.get(&key) {
            Some(k) => k,
            None => {
                let k = dev.compile(&program, &files)?;
                opened.memo.put(key, k.clone());
                k
            }
        };

        let min = dev.capabilities().min_surface_bytes;
        let alloc = |ps: &[&Port]| ps.iter().map(|p| p.bytes).fold(min, usize::max);
        let all_in: Vec<&Port> = inputs.iter().chain(&weights).collect();
        let input_alloc = alloc(&all_in);
        let output_alloc = alloc(&outputs.iter().collect::<Vec<_>>());
        let surf = |p: &Port, a: usize| dev.surface_with_alloc(&p.ty.shape, p.ty.dtype, a);
        let in_surfaces: Vec<Surface> = all_in
            .iter()
            .map(|p| surf(p, input_alloc))
            .collect::<Result<_, _>>()?;
        let out_surfaces: Vec<Surface> = outputs
            .iter()
            .map(|p| surf(p, output_alloc))
            .collect::<Result<_, _>>()?;
        let ins: Vec<(&str, &Surface)> = all_in
            .iter()
            .zip(&in_surfaces)
            .map(|(p, s)| (p.name.as_str(), s))
            .collect();
        let outs: Vec<(&str, &Surface)> = outputs
            .iter()
            .zip(&out_surfaces)
            .map(|(p, s)| (p.name.as_str(), s))
            .collect();
        let binding = kernel.bind(&ins, &outs)?;
        Ok(Handle {
            device: dev,
            binding,
            aliased: vec![false; n + m],
            inputs,
            weights,
            outputs,
            input_alloc,
        })
    }

    /// Runs the kernel once.
    pub fn eval(&self) -> Result<()> {
        Ok(self.binding.eval()?)
    }

    fn port<'p>(ports: &'p [Port], what: &'static str, index: i64) -> Result<&'p Port> {
        usize::try_from(index)
            .ok()
            .and_then(|i| ports.get(i))
            .ok_or(BridgeError::Index {
                what,
                index,
                count: ports.len(),
            })
    }

    /// Writes raw bytes into the start of input `index` (or weight `index` when `weight`).
    pub fn write(&mut self, weight: bool, index: i64, data: &[u8]) -> Result<()> {
        let (ports, what) = self.params(weight);
        let p = Self::port(ports, what, index)?;
        if data.len() > p.bytes {
            return Err(BridgeError::Oversize(format!(
                "{} bytes do not fit {what} {index} `{}` ({}, {} bytes); nothing was written",
                data.len(),
                p.name,
                p.ty,
                p.bytes
            )));
        }
        let name = p.name.clone();
        let slot = self.slot(weight, index);
        self.detach(slot)?;
        let s = self.binding.input(&name)?;
        let mut lock = s.lock_write("ane_bridge write")?;
        lock.bytes_mut(data.len()).copy_from_slice(data);
        Ok(())
    }

    /// Writes `values` (converted to the tensor's dtype) into the start of weight `index`.
    pub fn write_weight_f32(&mut self, index: i64, values: &[f32]) -> Result<()> {
        let p = Self::port(&self.weights, "weight", index)?;
        let count = p.ty.num_elements().unwrap_or(0);
        if values.len() > count {
            return Err(BridgeError::Oversize(format!(
                "{} values do not fit weight {index} `{}` ({}, {count} elements); nothing was written",
                values.len(),
                p.name,
                p.ty
            )));
        }
        let name = p.name.clone();
        let slot = self.slot(true, index);
        self.detach(slot)?;
        Ok(self.binding.input(&name)?.write_f32_at(0, values)?)
    }

    /// Copies output `index` into `out`, at most the tensor's bytes; returns the bytes copied.
    pub fn read_output(&self, index: i64, out: &mut [u8]) -> Result<usize> {
        let p = Self::port(&self.outputs, "output", index)?;
        let n = out.len().min(p.bytes);
        let s = self.binding.output(&p.name)?;
        let lock = s.lock_read("ane_bridge_read_output")?;
        out[..n].copy_from_slice(lock.bytes(n));
        Ok(n)
    }

    fn params(&self, weight: bool) -> (&[Port], &'static str) {
        if weight {
            (&self.weights, "weight")
        } else {
            (&self.inputs, "input")
        }
    }

    /// Parameter position of input or weight `index` (already range-checked).
    fn slot(&self, weight: bool, index: i64) -> usize {
        let i = index as usize;
        if weight {
            self.inputs.len() + i
        } else {
            i
        }
    }

    fn param_name(&self, slot: usize) -> &str {
        match self.inputs.get(slot) {
            Some(p) => &p.name,
            None => &self.weights[slot - self.inputs.len()].name,
        }
    }

    /// Gives parameter `slot` a surface of its own again if `copy_io` aliased it to another
    /// handle's output, keeping its contents, so a write never reaches the other handle.
    fn detach(&mut self, slot: usize) -> Result<()> {
        if !self.aliased[slot] {
            return Ok(());
        }
        let name = self.param_name(slot).to_string();
        let old = self.binding.input(&name)?.clone();
        let fresh = self
            .device
            .surface_with_alloc(old.shape(), old.dtype(), self.input_alloc)?;
        {
            let src = old.lock_read("ane_bridge detach")?;
            let mut dst = fresh.lock_write("ane_bridge detach")?;
            let n = old.data_bytes();
            dst.bytes_mut(n).copy_from_slice(src.bytes(n));
        }
        self.rebind(&name, fresh)?;
        self.aliased[slot] = false;
        Ok(())
    }

    fn rebind(&mut self, name: &str, surface: Surface) -> Result<()> {
        let mut ins: Vec<(String, Surface)> = Vec::new();
        for p in self.inputs.iter().chain(&self.weights) {
            let s = if p.name == name {
                surface.clone()
            } else {
                self.binding.input(&p.name)?.clone()
            };
            ins.push((p.name.clone(), s));
        }
        let outs: Vec<(String, Surface)> = self
            .outputs
            .iter()
            .map(|p| Ok((p.name.clone(), self.binding.output(&p.name)?.clone())))
            .collect::<Result<_>>()?;
        let i: Vec<(&str, &Surface)> = ins.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let o: Vec<(&str, &Surface)> = outs.iter().map(|(n, s)| (n.as_str(), s)).collect();
        self.binding = self.binding.kernel().bind(&i, &o)?;
        Ok(())
    }
}

/// How [`copy_io`] moved the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// The destination input now shares the source output's memory.
    Aliased,
    /// The bytes were copied.
    Copied,
}

/// Copies `n` bytes from the start of `from` into the start of `to`.
fn raw_copy(from: &Surface, to: &Surface, n: usize) -> Result<()> {
    let src = from.lock_read("ane_bridge_copy_io")?;
    let mut dst = to.lock_write("ane_bridge_copy_io")?;
    dst.bytes_mut(n).copy_from_slice(src.bytes(n));
    Ok(())
}

/// The ports `copy_io` connects, with equal byte sizes checked.
fn io_ports(src: &Handle, out: i64, dst: &Handle, inp: i64) -> Result<(Port, Port)> {
    let sp = Handle::port(&src.outputs, "output", out)?.clone();
    let dp = Handle::port(&dst.inputs, "input", inp)?.clone();
    if sp.bytes != dp.bytes {
        return Err(BridgeError::Mismatch(format!(
            "copy_io: output {out} `{}` ({}) is {} bytes but input {inp} `{}` ({}) is {} bytes",
            sp.name, sp.ty, sp.bytes, dp.name, dp.ty, dp.bytes
        )));
    }
    Ok((sp, dp))
}

/// Connects `src`'s output `out` to `dst`'s input `inp`: aliases the input to the output's
/// surface where the runtime can (same shape and dtype, and the device's binding rules still
/// hold), else copies the bytes.
pub fn copy_io(src: &Handle, out: i64, dst: &mut Handle, inp: i64) -> Result<CopyKind> {
    let (sp, dp) = io_ports(src, out, dst, inp)?;
    let slot = dst.slot(false, inp);
    let from = src.binding.output(&sp.name)?.clone();
    if dst.binding.input(&dp.name)?.same_memory(&from) {
        return Ok(CopyKind::Aliased);
    }
    if from.shape() == dp.ty.shape.as_slice() && from.dtype() == dp.ty.dtype {
        if let Ok(Feed::Aliased) = dst.binding.feed_from(&dp.name, &src.binding, &sp.name) {
            dst.aliased[slot] = true;
            return Ok(CopyKind::Aliased);
        }
    }
    dst.detach(slot)?;
    raw_copy(&from, dst.binding.input(&dp.name)?, dp.bytes)?;
    Ok(CopyKind::Copied)
}

/// `copy_io` from a handle's own output into its own input: always a copy.
pub fn copy_io_self(h: &mut Handle, out: i64, inp: i64) -> Result<CopyKind> {
    let (sp, dp) = io_ports(h, out, h, inp)?;
    let slot = h.slot(false, inp);
    h.detach(slot)?;
    let from = h.binding.output(&sp.name)?.clone();
    raw_copy(&from, h.binding.input(&dp.name)?, dp.bytes)?;
    Ok(CopyKind::Copied)
}

/// A live handle, shared between the registry and calls in progress.
pub type Shared = Arc<Mutex<Handle>>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
static REGISTRY: Mutex<Option<HashMap<usize, Shared>>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<HashMap<usize, Shared>>> {
    // A map of Arcs stays consistent after any panic.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `h` and returns its id (never 0, never reused).
pub fn register(h: Handle) -> usize {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry()
        .get_or_insert_with(HashMap::new)
        .insert(id, Arc::new(Mutex::new(h)));
    id
}

/// The live handle `id`; `what` names the argument in the error.
pub fn lookup(id: usize, what: &'static str) -> Result<Shared> {
    if id == 0 {
        return Err(BridgeError::Null(what));
    }
    registry()
        .as_ref()
        .and_then(|m| m.get(&id).cloned())
        .ok_or(BridgeError::NotAHandle(what))
}

/// Removes handle `id`; it is dropped when the last call using it returns.
pub fn unregister(id: usize, what: &'static str) -> Result<()> {
    if id == 0 {
        return Err(BridgeError::Null(what));
    }
    registry()
        .as_mut()
        .and_then(|m| m.remove(&id))
        .map(|_| ())
        .ok_or(BridgeError::NotAHandle(what))
}

/// Locks a handle; a call that panicked while holding it leaves memory-safe state (surface
/// locks are released on unwind), so the poison is ignored.
pub fn lock(h: &Shared) -> MutexGuard<'_, Handle> {
    h.lock().unwrap_or_else(PoisonError::into_inner)
}
