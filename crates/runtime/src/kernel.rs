//! Kernels and Bindings.
//!
//! A [`Kernel`] is a compiled Program on a Device (≈ IREE executable ≈ upstream's loaded
//! `_ANEInMemoryModel`). A [`Binding`] is the set of Surfaces one evaluation reads and writes
//! (≈ IREE binding table ≈ `_ANERequest`): validated once when it is made, then evaluated any
//! number of times while only Surface contents change. Kernels are `Send + Sync` and cheap to
//! clone; a Binding is `Send`, one evaluation at a time.

use std::sync::Arc;

use ane_mil::TensorType;

use crate::device::{BindingOrder, Capabilities, Fidelity};
use crate::error::{Error, Result};
use crate::rules;
use crate::surface::Surface;

/// A named, typed kernel input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    /// MIL name (parameter name or returned variable).
    pub name: String,
    /// Static type.
    pub ty: TensorType,
}

/// The interface of a compiled kernel, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// Parameters, as declared.
    pub inputs: Vec<TensorDesc>,
    /// Returned values, as returned.
    pub outputs: Vec<TensorDesc>,
}

impl KernelInfo {
    /// Index (declaration order) of the input named `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|d| d.name == name)
    }

    /// Index (return order) of the output named `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|d| d.name == name)
    }
}

/// What a device implements for a compiled kernel.
pub trait KernelImpl: Send + Sync + std::fmt::Debug {
    /// The kernel's interface.
    fn info(&self) -> &KernelInfo;

    /// The device's capabilities (fidelity, binding order, accepted dtypes).
    fn capabilities(&self) -> &Capabilities;

    /// Prepares an evaluation over `inputs` and `outputs`, given in declaration order (the
    /// generic layer has already mapped request slots to parameters and checked shapes).
    fn bind(&self, inputs: &[Surface], outputs: &[Surface]) -> Result<Box<dyn BindingImpl>>;
}

/// What a device implements for a prepared evaluation.
pub trait BindingImpl: Send + std::fmt::Debug {
    /// Runs the kernel once over the bound surfaces.
    fn eval(&self) -> Result<()>;
}

/// A compiled kernel; see the module docs.
#[derive(Debug, Clone)]
pub struct Kernel {
    inner: Arc<dyn KernelImpl>,
}

impl Kernel {
    /// Wraps a device's kernel.
    pub fn new(inner: Arc<dyn KernelImpl>) -> Self {
        Kernel { inner }
    }

    /// The kernel's interface.
    pub fn info(&self) -> &KernelInfo {
        self.inner.info()
    }

    /// Binds surfaces by MIL name. Every input and output must be given exactly once with the
    /// declared shape and a dtype the device accepts; the mapping to hardware slots is computed
    /// here from the names, never assumed from declaration order.
    pub fn bind(
        &self,
        inputs: &[(&str, &Surface)],
        outputs: &[(&str, &Surface)],
    ) -> Result<Binding> {
        let info = self.info();
        let ins = by_name("input", &info.inputs, inputs)?;
        let outs = by_name("output", &info.outputs, outputs)?;
        self.bind_declared(ins, outs)
    }

    /// Binds surfaces by request slot, as upstream's `_ANERequest` does: slot `i` is the
    /// device's `i`-th input — declaration order on the CPU device, but alphabetical order of
    /// the MIL names on the Neural Engine and `ane-sim` (rule 4). Prefer [`Kernel::bind`].
    pub fn bind_slots(&self, inputs: &[&Surface], outputs: &[&Surface]) -> Result<Binding> {
        let info = self.info();
        let order = self.inner.capabilities().binding_order;
        let ins = from_slots("input", &info.inputs, inputs, order)?;
        let outs = from_slots("output", &info.outputs, outputs, order)?;
        self.bind_declared(ins, outs)
    }

    fn bind_declared(&self, inputs: Vec<Surface>, outputs: Vec<Surface>) -> Result<Binding> {
        let info = self.info();
        let caps = self.inner.capabilities();
        for (descs, surfaces) in [(&info.inputs, &inputs), (&info.outputs, &outputs)] {
            for (d, s) in descs.iter().zip(surfaces) {
                check_surface(caps, d, s)?;
            }
        }
        for o in &outputs {
            if inputs.iter().any(|i| i.same_memory(o)) {
                return Err(Error::Binding(
                    "one surface is bound as both an input and an output".into(),
                ));
            }
        }
        if caps.fidelity == Fidelity::Ane {
            rules::check_binding(&inputs, &outputs)?;
        }
        let imp = self.inner.bind(&inputs, &outputs)?;
        Ok(Binding {
            kernel: self.clone(),
            inputs,
            outputs,
            imp,
        })
    }
}

/// Orders `given` (name, surface) pairs as `descs` declares them.
fn by_name(what: &str, descs: &[TensorDesc], given: &[(&str, &Surface)]) -> Result<Vec<Surface>> {
    for (i, (name, _)) in given.iter().enumerate() {
        if !descs.iter().any(|d| d.name == *name) {
            let names: Vec<_> = descs.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::Binding(format!(
                "the kernel has no {what} `{name}` (its {what}s: {})",
                names.join(", ")
            )));
        }
        if given[..i].iter().any(|(n, _)| n == name) {
            return Err(Error::Binding(format!("{what} `{name}` is given twice")));
        }
    }
    descs
        .iter()
        .map(|d| {
            given
                .iter()
                .find(|(n, _)| *n == d.name)
                .map(|(_, s)| (*s).clone())
                .ok_or_else(|| Error::Binding(format!("{what} `{}` is not bound", d.name)))
        })
        .collect()
}

/// The declaration index of each slot under `order`.
pub fn slot_order(descs: &[TensorDesc], order: BindingOrder) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..descs.len()).collect();
    if order == BindingOrder::Alphabetical {
        idx.sort_by(|&a, &b| descs[a].name.as_bytes().cmp(descs[b].name.as_bytes()));
    }
    idx
}

fn from_slots(
    what: &str,
    descs: &[TensorDesc],
    slots: &[&Surface],
    order: BindingOrder,
) -> Result<Vec<Surface>> {
    if slots.len() != descs.len() {
        return Err(Error::Binding(format!(
            "the kernel has {} {what}s, {} surfaces given",
            descs.len(),
            slots.len()
        )));
    }
    let mut out: Vec<Option<Surface>> = vec![None; descs.len()];
    for (slot, decl) in slot_order(descs, order).into_iter().enumerate() {
        out[decl] = Some(slots[slot].clone());
    }
    Ok(out.into_iter().flatten().collect())
}

fn check_surface(caps: &Capabilities, d: &TensorDesc, s: &Surface) -> Result<()> {
    if !caps.surface_dtypes.contains(&s.dtype()) {
        return Err(Error::Binding(format!(
            "`{}`: {} surfaces are not accepted by {} (use {:?})",
            d.name,
            s.dtype(),
            caps.kind,
            caps.surface_dtypes
        )));
    }
    let same_count = d.ty.num_elements() == Some(s.elements());
    let fp_ok = d.ty.dtype == s.dtype()
        || (d.ty.dtype.is_float() && s.dtype().is_float() && caps.fidelity == Fidelity::Exact);
    if d.ty.shape != s.shape() || !same_count || !fp_ok {
        return Err(Error::Binding(format!(
            "`{}` is declared {} but the surface is {} {:?}",
            d.name,
            d.ty,
            s.dtype(),
            s.shape()
        )));
    }
    Ok(())
}

/// The surfaces of one evaluation; see the module docs.
#[derive(Debug)]
pub struct Binding {
    kernel: Kernel,
    inputs: Vec<Surface>,
    outputs: Vec<Surface>,
    imp: Box<dyn BindingImpl>,
}

/// How [`Binding::feed_from`] connected two kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The input now shares the output's memory: no copy, ever.
    Aliased,
    /// Shapes or dtypes differ, so the data was copied (and converted) once.
    Copied,
}

impl Binding {
    /// Evaluates the kernel once.
    pub fn eval(&self) -> Result<()> {
        self.imp.eval()
    }

    /// The kernel this binding evaluates.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The surface bound to input `name`.
    pub fn input(&self, name: &str) -> Result<&Surface> {
        let i = self
            .kernel
            .info()
            .input_index(name)
            .ok_or_else(|| Error::Binding(format!("the kernel has no input `{name}`")))?;
        Ok(&self.inputs[i])
    }

    /// The surface bound to output `name`.
    pub fn output(&self, name: &str) -> Result<&Surface> {
        let i = self
            .kernel
            .info()
            .output_index(name)
            .ok_or_else(|| Error::Binding(format!("the kernel has no output `{name}`")))?;
        Ok(&self.outputs[i])
    }

    /// Connects `src`'s output `output` to this binding's input `input`. When the two have the
    /// same shape and dtype the input is rebound to the output's surface (aliasing: later evals
    /// of `src` feed this kernel with no copy); otherwise the current contents are copied
    /// once, converting dtype, and the call must be repeated after each eval of `src`.
    pub fn feed_from(&mut self, input: &str, src: &Binding, output: &str) -> Result<Feed> {
        let from = src.output(output)?.clone();
        let i = self
            .kernel
            .info()
            .input_index(input)
            .ok_or_else(|| Error::Binding(format!("the kernel has no input `{input}`")))?;
        let to = &self.inputs[i];
        if from.shape() == to.shape() && from.dtype() == to.dtype() {
            let mut inputs = self.inputs.clone();
            inputs[i] = from;
            let rebound = self.kernel.bind_declared(inputs, self.outputs.clone())?;
            *self = rebound;
            return Ok(Feed::Aliased);
        }
        if from.elements() != to.elements() {
            return Err(Error::Binding(format!(
                "cannot feed {:?} into `{input}` {:?}: element counts differ",
                from.shape(),
                to.shape()
            )));
        }
        to.write_f32(&from.read_f32()?)?;
        Ok(Feed::Copied)
    }
}
