//! Compiling a Program on the Neural Engine, and the Kernel and Binding that result.
//!
//! compile: check the program rules → print the MIL → collect its BLOBFILE weight files →
//! count against the budget → descriptor + model → write `model.mil` and the weight files
//! into the model's temp dir → compile (or restore `net.plist`/`data` from the cache) → load,
//! retrying once after 100 ms. bind: check the surface rules → order the surfaces
//! alphabetically by MIL name (rule 4, never declaration order) → one `_ANERequest`, reused
//! by every eval. Dropping the last user of a kernel unloads it and removes its temp dir.

use std::fmt;
use std::sync::Arc;

use ane_mil::{Arg, Function, Literal, Program};

use super::backend::{AneSys, WeightFile};
use super::device::Shared;
use super::errors::to_error;
use super::memory::{DeviceAccess, IoSurface};
use super::model_dir::ModelDir;
use crate::cache::CacheKey;
use crate::device::{BindingOrder, Capabilities};
use crate::error::{Error, Result};
use crate::kernel::{slot_order, BindingImpl, Kernel, KernelImpl, KernelInfo, TensorDesc};
use crate::rules;
use crate::surface::{Lock, Surface};
use crate::weights::Weights;

/// Most surfaces one side of an `_ANERequest` may hold (`_ANERequest validate`).
pub const MAX_REQUEST_BUFFERS: usize = 255;

/// Compiles `program` on the device behind `sh`; see the module docs.
pub(crate) fn compile<S: AneSys>(
    sh: &Arc<Shared<S>>,
    program: &Program,
    weights: &Weights,
) -> Result<Kernel> {
    ane_mil::verify::verify(program)?;
    rules::check_program(program)?;
    let main = program.main().ok_or(Error::NoMain)?;
    let info = kernel_info(main)?;
    let mut printed = program.clone();
    if printed.dialect != sh.caps.dialect {
        printed.dialect = sh.caps.dialect;
        printed.build_info = sh.caps.dialect.default_build_info();
    }
    let text = ane_mil::print(&printed);
    let files = weight_files(program, weights)?;
    let weights_hash = if files.is_empty() {
        [0; 32]
    } else {
        weights.content_hash(files.iter().map(|(p, _)| p.as_str()))?
    };
    let key = CacheKey::new(
        &text,
        weights_hash,
        sh.caps.kind.name(),
        &sh.sys.os_build(),
        super::sys::ANE_FRAMEWORK,
    );
    let cached = sh.opts.cache.get(&key);
    sh.opts.budget.try_acquire()?;

    let sys = &sh.sys;
    let qos = sh.opts.qos;
    let model = sys
        .new_model(text.as_bytes(), Some(&files))
        .map_err(|e| to_error("compile", e))?;
    let id = sys.model_id(&model).map_err(|e| to_error("compile", e))?;
    let dir = ModelDir::create(&sh.dirs, sys.temp_root().join(&id), &text, &files)?;
    match cached {
        Some(artifacts) => dir.restore(&artifacts)?,
        None => {
            sys.compile(&model, qos)
                .map_err(|e| to_error("compile", e))?;
            // The cache may be a no-op; a failed store only costs a later recompile.
            if let Ok(artifacts) = dir.artifacts() {
                let _ = sh.opts.cache.put(&key, &artifacts);
            }
        }
    }
    if let Err(first) = sys.load(&model, qos) {
        std::thread::sleep(sh.opts.load_retry_delay);
        sys.load(&model, qos).map_err(|second| {
            to_error(
                "load",
                second.with_context(&format!("first attempt: {first}")),
            )
        })?;
    }
    let loaded = Arc::new(Loaded {
        shared: sh.clone(),
        model,
        id,
        _dir: dir,
    });
    Ok(Kernel::new(Arc::new(AneKernel {
        loaded,
        info,
        caps: sh.caps.clone(),
    })))
}

fn kernel_info(main: &Function) -> Result<KernelInfo> {
    let inputs = main
        .params
        .iter()
        .map(|p| TensorDesc {
            name: p.name.clone(),
            ty: p.ty.clone(),
        })
        .collect();
    let outputs = main
        .returns
        .iter()
        .map(|r| {
            let ty = main.type_of(r).cloned().ok_or_else(|| Error::Unsupported {
                device: "ane",
                detail: format!("returned `{r}` is not defined"),
            })?;
            Ok(TensorDesc {
                name: r.clone(),
                ty,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for (what, n) in [
        ("inputs", main.params.len()),
        ("outputs", main.returns.len()),
    ] {
        if n == 0 || n > MAX_REQUEST_BUFFERS {
            return Err(Error::Unsupported {
                device: "ane",
                detail: format!("{n} {what}: a request takes 1 to {MAX_REQUEST_BUFFERS}"),
            });
        }
    }
    Ok(KernelInfo { inputs, outputs })
}

/// Every BLOBFILE the program names, sorted by path, with its bytes from `weights`.
fn weight_files(program: &Program, weights: &Weights) -> Result<Vec<WeightFile>> {
    let mut paths: Vec<&str> = Vec::new();
    for f in &program.functions {
        for s in &f.body {
            let lits = s
                .attrs
                .iter()
                .map(|(_, l)| l)
                .chain(s.args.iter().filter_map(|(_, a)| match a {
                    Arg::Literal(l) => Some(l),
                    _ => None,
                }));
            for l in lits {
                if let Literal::BlobFile { path, .. } = l {
                    paths.push(path);
                }
            }
        }
    }
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            super::model_dir::relative(p)?;
            Ok((p.to_string(), weights.get(p)?))
        })
        .collect()
}

/// A loaded model; unloaded, released and its temp dir removed when dropped.
struct Loaded<S: AneSys> {
    shared: Arc<Shared<S>>,
    model: S::Model,
    id: String,
    _dir: ModelDir,
}

impl<S: AneSys> fmt::Debug for Loaded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("id", &self.id)
            .field("model", &self.model)
            .finish()
    }
}

impl<S: AneSys> Drop for Loaded<S> {
    fn drop(&mut self) {
        // Nothing can be done about a failed unload while dropping; the daemon frees the
        // model when the process exits.
        let _ = self.shared.sys.unload(&self.model, self.shared.opts.qos);
    }
}

/// A compiled, loaded `_ANEInMemoryModel`.
pub struct AneKernel<S: AneSys> {
    loaded: Arc<Loaded<S>>,
    info: KernelInfo,
    caps: Capabilities,
}

impl<S: AneSys> fmt::Debug for AneKernel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AneKernel")
            .field("model", &self.loaded)
            .field("info", &self.info)
            .finish()
    }
}

impl<S: AneSys> KernelImpl for AneKernel<S> {
    fn info(&self) -> &KernelInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// `inputs`/`outputs` arrive in declaration order; the request gets them in alphabetical
    /// order of the MIL names, which is how the hardware binds them (rule 4).
    fn bind(&self, inputs: &[Surface], outputs: &[Surface]) -> Result<Box<dyn BindingImpl>> {
        if inputs.len() != self.info.inputs.len() || outputs.len() != self.info.outputs.len() {
            return Err(Error::Binding(format!(
                "the kernel has {} inputs and {} outputs; {} and {} surfaces given",
                self.info.inputs.len(),
                self.info.outputs.len(),
                inputs.len(),
                outputs.len()
            )));
        }
        rules::check_binding(inputs, outputs)?;
        let sh = &self.loaded.shared;
        let order = |descs: &[TensorDesc], given: &[Surface]| -> Vec<Surface> {
            slot_order(descs, BindingOrder::Alphabetical)
                .into_iter()
                .map(|d| given[d].clone())
                .collect()
        };
        let ins = order(&self.info.inputs, inputs);
        let outs = order(&self.info.outputs, outputs);
        let io = |set: &[Surface]| -> Result<Vec<Arc<IoSurface<S>>>> {
            set.iter().map(|s| sh.registry.io_surface(s)).collect()
        };
        let (in_io, out_io) = (io(&ins)?, io(&outs)?);
        let in_idx: Vec<usize> = (0..ins.len()).collect();
        let out_idx: Vec<usize> = (0..outs.len()).collect();
        let in_h = in_io
            .iter()
            .map(|s| s.handle())
            .collect::<Result<Vec<_>>>()?;
        let out_h = out_io
            .iter()
            .map(|s| s.handle())
            .collect::<Result<Vec<_>>>()?;
        let request = sh
            .sys
            .new_request(&in_h, &in_idx, &out_h, &out_idx, 0)
            .map_err(|e| to_error("bind", e))?;
        Ok(Box::new(AneBinding {
            loaded: self.loaded.clone(),
            request,
            inputs: ins,
            outputs: outs,
        }))
    }
}

/// An `_ANERequest` over one kernel's surfaces, built once and evaluated many times.
pub struct AneBinding<S: AneSys> {
    loaded: Arc<Loaded<S>>,
    request: S::Request,
    /// In request (alphabetical) order; kept alive and locked during each eval.
    inputs: Vec<Surface>,
    outputs: Vec<Surface>,
}

impl<S: AneSys> fmt::Debug for AneBinding<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AneBinding")
            .field("model", &self.loaded.id)
            .field("request", &self.request)
            .finish()
    }
}

impl<S: AneSys> BindingImpl for AneBinding<S> {
    fn eval(&self) -> Result<()> {
        let _device = DeviceAccess::enter();
        let mut locks: Vec<Lock<'_>> = Vec::with_capacity(self.inputs.len() + self.outputs.len());
        for s in &self.inputs {
            locks.push(s.lock_read("ane eval")?);
        }
        for s in &self.outputs {
            locks.push(s.lock_write("ane eval")?);
        }
        let sh = &self.loaded.shared;
        let result = sh
            .sys
            .evaluate(&self.loaded.model, &self.request, sh.opts.qos)
            .map_err(|e| to_error("eval", e));
        drop(locks);
        result
    }
}
