//! One bound kernel: its input and output surfaces, the host buffers that stage weight
//! blocks and activation blocks into them, and its share of the step's timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ane_mil::DType;
use ane_runtime::{Binding, Device, Kernel, Surface, Weights};

use super::{ModelError, Result};
use crate::kernels::{BlockContent, KernelKind, KernelSpec, LayerWeights};

/// One layer's binding of a compiled kernel: its surfaces and host staging buffers. Weight
/// blocks are staged once ([`Runner::stage_weights`]); each run writes only activations.
#[derive(Debug)]
pub(super) struct Runner {
    pub(super) spec: Arc<KernelSpec>,
    pub(super) inputs: Vec<Surface>,
    output: Surface,
    binding: Binding,
    pub(super) staging: Vec<Vec<f32>>,
    /// Per input, a buffer for one activation block when it cannot be written in place.
    scratch: Vec<Vec<f32>>,
    /// Time spent in `Binding::eval` since the last [`Model::timings`] reset.
    device: Duration,
    /// Time spent moving data into and out of surfaces since then.
    traffic: Duration,
}

/// Compiles `spec` on `device`.
pub(super) fn compile_spec(device: &dyn Device, spec: &KernelSpec) -> Result<Kernel> {
    let mut weights = Weights::new();
    for (path, bytes) in &spec.weights {
        weights.insert(path.clone(), bytes.clone());
    }
    Ok(device.compile(&spec.program, &weights)?)
}

impl Runner {
    /// Binds `kernel` (compiled from `spec`) to fresh surfaces: every input of one allocation
    /// size, as the Neural Engine requires.
    pub(super) fn new(
        device: &dyn Device,
        kernel: &Kernel,
        spec: Arc<KernelSpec>,
    ) -> Result<Runner> {
        let dtype = device.capabilities().surface_dtypes[0];
        let mut inputs = Vec::new();
        for slot in &spec.inputs {
            inputs.push(device.surface_with_alloc(&slot.shape, dtype, spec.input_alloc_bytes())?);
        }
        let out_slot = &spec.outputs[0];
        let output =
            device.surface_with_alloc(&out_slot.shape, dtype, spec.output_alloc_bytes())?;
        let ins: Vec<(&str, &Surface)> = spec
            .inputs
            .iter()
            .map(|s| s.name.as_str())
            .zip(&inputs)
            .collect();
        let binding = kernel.bind(&ins, &[(out_slot.name.as_str(), &output)])?;
        let staging = spec.inputs.iter().map(|s| vec![0.0; s.len()]).collect();
        let scratch = spec
            .inputs
            .iter()
            .map(|slot| {
                let largest = slot
                    .blocks
                    .iter()
                    .filter(|b| matches!(b.content, BlockContent::Activation))
                    .map(|b| b.channels.len() * b.columns.len())
                    .max()
                    .unwrap_or(0);
                Vec::with_capacity(largest)
            })
            .collect();
        Ok(Runner {
            spec,
            inputs,
            output,
            binding,
            staging,
            scratch,
            device: Duration::ZERO,
            traffic: Duration::ZERO,
        })
    }

    /// Writes the weight blocks of `w` into the input surfaces (once per weight update).
    pub(super) fn stage_weights(&mut self, w: &LayerWeights<'_>) -> Result<()> {
        for ((slot, buf), surface) in self
            .spec
            .inputs
            .iter()
            .zip(&mut self.staging)
            .zip(&self.inputs)
        {
            let mut any = false;
            for block in &slot.blocks {
                if let BlockContent::Weight { matrix, .. } = block.content {
                    slot.write_block(buf, &block.name, w.get(matrix))?;
                    any = true;
                }
            }
            if any {
                surface.write_f32(buf)?;
            }
        }
        Ok(())
    }

    /// Lets `fill` write activation block `name` (`[channels, columns]`, channel-first). When
    /// the block is a whole input of an fp32 surface (Baked and Params modes on `cpu`), `fill`
    /// writes straight into the surface — the host op's output IS the kernel input, no copy.
    /// Otherwise it writes a staging buffer that is converted into the surface's block (fp16
    /// surfaces, or a packed input whose weight columns must stay untouched).
    pub(super) fn act(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut [f32]) -> Result<()>,
    ) -> Result<()> {
        let i = self
            .spec
            .inputs
            .iter()
            .position(|slot| slot.blocks.iter().any(|b| b.name == name))
            .ok_or_else(|| ModelError::Shape(format!("the kernel has no activation `{name}`")))?;
        // A second handle on the spec (a refcount, not a copy) lets `block` borrow from it
        // while the buffers of `self` are written.
        let spec = Arc::clone(&self.spec);
        let (slot, surface) = (&spec.inputs[i], &self.inputs[i]);
        let block = slot.block(name)?;
        if slot.blocks.len() == 1 && surface.dtype() == DType::Fp32 {
            let mut guard = surface.write::<f32>()?;
            return fill(&mut guard);
        }
        let scratch = &mut self.scratch[i];
        scratch.resize(block.channels.len() * block.columns.len(), 0.0);
        fill(scratch)?;
        let t1 = Instant::now();
        slot.write_block(&mut self.staging[i], name, scratch)?;
        if slot.blocks.len() == 1 {
            surface.write_f32(&self.staging[i])?;
        } else {
            surface.write_f32_rect(
                slot.shape[3],
                block.channels.clone(),
                block.columns.clone(),
                &self.staging[i],
            )?;
        }
        self.traffic += t1.elapsed();
        Ok(())
    }

    /// Writes the activation blocks `acts` (by block name) and evaluates.
    pub(super) fn run(&mut self, acts: &[(&str, &[f32])]) -> Result<()> {
        for (name, src) in acts {
            self.act(name, |dst| {
                if dst.len() != src.len() {
                    return Err(ModelError::Shape(format!(
                        "`{name}` has {} values, the block {}",
                        src.len(),
                        dst.len()
                    )));
                }
                dst.copy_from_slice(src);
                Ok(())
            })?;
        }
        self.eval()
    }

    /// Evaluates the kernel over what the inputs hold now.
    pub(super) fn eval(&mut self) -> Result<()> {
        let t = Instant::now();
        self.binding.eval()?;
        self.device += t.elapsed();
        Ok(())
    }

    /// Reads output part `name` (`[channels, S]`) from the output surface into `dst`, which
    /// must hold exactly its values.
    pub(super) fn part_into(&mut self, name: &str, dst: &mut [f32]) -> Result<()> {
        let t = Instant::now();
        let out = &self.spec.outputs[0];
        let ch = out.part(name)?;
        let s = out.shape[3];
        if dst.len() != ch.len() * s {
            return Err(ModelError::Shape(format!(
                "output `{name}` has {} values, the buffer {}",
                ch.len() * s,
                dst.len()
            )));
        }
        self.output.read_f32_into(ch.start * s, dst)?;
        self.traffic += t.elapsed();
        Ok(())
    }

    /// Device and traffic time since the last call, reset to zero.
    pub(super) fn take_times(&mut self) -> (Duration, Duration) {
        (
            std::mem::take(&mut self.device),
            std::mem::take(&mut self.traffic),
        )
    }
}

/// One layer's runners, indexed by [`KernelKind::index`]; only the kinds of the model's kernel
/// set are present.
#[derive(Debug, Default)]
pub(super) struct LayerKernels(pub(super) [Option<Runner>; KernelKind::ALL.len()]);

impl LayerKernels {
    /// The runner of `kind`.
    pub(super) fn get(&mut self, kind: KernelKind) -> Result<&mut Runner> {
        self.0[kind.index()]
            .as_mut()
            .ok_or_else(|| ModelError::Shape(format!("kernel {} was not compiled", kind.name())))
    }

    /// Every present runner, with its kind.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (KernelKind, &mut Runner)> {
        KernelKind::ALL
            .into_iter()
            .zip(self.0.iter_mut())
            .filter_map(|(k, r)| r.as_mut().map(|r| (k, r)))
    }
}
