//! One bound kernel: its input and output surfaces, the host buffers that stage weight
//! blocks and activation blocks into them, and its share of the step's timings.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ane_mil::DType;
use ane_runtime::cpu::ExternalMemory;
use ane_runtime::{Binding, Device, Kernel, Surface, Weights};

use super::views::LayerRanges;
use super::{ModelError, Result};
use crate::kernels::{BlockContent, InputSlot, KernelKind, KernelSpec, LayerWeights};

/// One layer's binding of a compiled kernel: its surfaces and host staging buffers. Weight
/// blocks are staged once ([`Runner::stage_weights`]); each run writes only activations.
#[derive(Debug)]
pub(super) struct Runner {
    pub(super) spec: Arc<KernelSpec>,
    pub(super) inputs: Vec<Surface>,
    /// Per input, whether its surface is a parameter tensor read in place.
    in_place: Vec<bool>,
    output: Surface,
    binding: Binding,
    pub(super) staging: Vec<Vec<f32>>,
    /// Per input, a buffer for one activation block when it cannot be written in place.
    scratch: Vec<Vec<f32>>,
    /// An fp16 output part converted to f32 for [`Runner::with_part`]: room for the largest
    /// part (empty for fp32 outputs, which are lent in place).
    out_scratch: Vec<f32>,
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
    /// size, as the Neural Engine requires. With `params` (the model's parameter buffer and
    /// this layer's ranges in it), a weight input that holds its matrix exactly as stored in
    /// fp32 is not allocated: its surface is the parameter tensor itself, read in place by
    /// every evaluation and never staged ([`Runner::stage_weights`] skips it).
    pub(super) fn new(
        device: &dyn Device,
        kernel: &Kernel,
        spec: Arc<KernelSpec>,
        params: Option<ParamsInPlace<'_>>,
    ) -> Result<Runner> {
        let dtype = device.capabilities().surface_dtypes[0];
        let mut inputs = Vec::new();
        let mut in_place = Vec::new();
        for slot in &spec.inputs {
            let aliased = match (&params, dtype) {
                (Some(p), DType::Fp32) => p.surface(slot)?,
                _ => None,
            };
            in_place.push(aliased.is_some());
            inputs.push(match aliased {
                Some(surface) => surface,
                None => device.surface_with_alloc(&slot.shape, dtype, spec.input_alloc_bytes())?,
            });
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
        let staging = spec
            .inputs
            .iter()
            .zip(&in_place)
            .map(|(s, &aliased)| {
                if aliased {
                    Vec::new()
                } else {
                    vec![0.0; s.len()]
                }
            })
            .collect();
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
        // fp16 outputs: room for the largest part, converted when lent (fp32 ones are lent in
        // place and need none).
        let out_scratch = match output.dtype() {
            DType::Fp32 => Vec::new(),
            _ => {
                let out = &spec.outputs[0];
                let largest = out
                    .parts
                    .iter()
                    .map(|p| p.channels.len())
                    .max()
                    .unwrap_or(0);
                vec![0.0; largest * out.shape[3]]
            }
        };
        Ok(Runner {
            spec,
            inputs,
            in_place,
            output,
            binding,
            staging,
            scratch,
            out_scratch,
            device: Duration::ZERO,
            traffic: Duration::ZERO,
        })
    }

    /// Writes the weight blocks of `w` into the input surfaces (once per weight update).
    pub(super) fn stage_weights(&mut self, w: &LayerWeights<'_>) -> Result<()> {
        for (((slot, buf), surface), &in_place) in self
            .spec
            .inputs
            .iter()
            .zip(&mut self.staging)
            .zip(&self.inputs)
            .zip(&self.in_place)
        {
            if in_place {
                continue;
            }
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

    /// Lends output part `name` (`[channels, S]`) to `read`: an fp32 output surface is read
    /// in place (a borrowed view, no copy); an fp16 one is converted into a buffer the runner
    /// keeps. Returns what `read` returns.
    pub(super) fn with_part<R>(
        &mut self,
        name: &str,
        read: impl FnOnce(&[f32]) -> Result<R>,
    ) -> Result<R> {
        let out = &self.spec.outputs[0];
        let ch = out.part(name)?;
        let span = ch.start * out.shape[3]..ch.end * out.shape[3];
        if self.output.dtype() == DType::Fp32 {
            let all = self.output.read::<f32>()?;
            let part = all.get(span).ok_or_else(|| {
                ModelError::Shape(format!("output `{name}` lies outside its surface"))
            })?;
            return read(part);
        }
        let t = Instant::now();
        let buf = self.out_scratch.get_mut(..span.len()).ok_or_else(|| {
            ModelError::Shape(format!("output `{name}` is larger than its buffer"))
        })?;
        self.output.read_f32_into(span.start, buf)?;
        self.traffic += t.elapsed();
        read(buf)
    }

    /// Device and traffic time since the last call, reset to zero.
    pub(super) fn take_times(&mut self) -> (Duration, Duration) {
        (
            std::mem::take(&mut self.device),
            std::mem::take(&mut self.traffic),
        )
    }
}

/// The model's parameter buffer, for binding weight inputs in place: its base and length
/// (f32 elements) and one layer's tensor ranges in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ParamsInPlace<'a> {
    /// Element 0 of the buffer, taken with `Vec::as_mut_ptr`.
    pub base: NonNull<f32>,
    /// Elements in the buffer.
    pub len: usize,
    /// The layer's ranges.
    pub ranges: &'a LayerRanges,
}

impl ParamsInPlace<'_> {
    /// A surface over the parameter tensor `slot` holds, when its one block is a matrix as
    /// stored (`W [out, in]`) and the slot is exactly that matrix's shape.
    fn surface(&self, slot: &InputSlot) -> Result<Option<Surface>> {
        let [block] = &slot.blocks[..] else {
            return Ok(None);
        };
        let BlockContent::Weight {
            matrix,
            transposed: false,
        } = block.content
        else {
            return Ok(None);
        };
        let range = self.ranges.matrix(matrix);
        if slot.len() != range.len() || block.columns.len() != slot.shape[3] || range.end > self.len
        {
            return Ok(None);
        }
        // SAFETY: `range` lies inside the buffer of `len` elements at `base` (checked above).
        let ptr = unsafe { self.base.add(range.start) }.cast::<u8>();
        // SAFETY: the model owns the buffer: it never reallocates it while runners exist (it
        // only ever writes it in place), drops its runners before it, and writes it only
        // between evaluations, never while a surface of it is locked.
        let mem = unsafe { ExternalMemory::new(ptr, range.len() * 4) };
        Ok(Some(Surface::new(&slot.shape, DType::Fp32, Box::new(mem))?))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{KernelDims, KernelOptions, WeightMode};

    /// D 32, two heads of 16, H 64, one window of 32.
    const DIMS: KernelDims = KernelDims {
        dim: 32,
        q_dim: 32,
        kv_dim: 32,
        hidden: 64,
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 16,
        seq: 32,
        window: 32,
    };

    fn runner(device: &str, mode: WeightMode) -> Runner {
        let dims = DIMS;
        let opts = KernelOptions {
            dtype: DType::Fp32,
            ..KernelOptions::default()
        };
        let w = vec![0.5f32; 32 * 64];
        let lw = LayerWeights {
            wq: &w[..1024],
            wk: &w[..1024],
            wv: &w[..1024],
            wo: &w[..1024],
            w1: &w,
            w2: &w,
            w3: &w,
        };
        let dev = ane_runtime::open(device).unwrap();
        let opts = if device == "cpu" {
            opts
        } else {
            KernelOptions {
                dtype: DType::Fp16,
                ..opts
            }
        };
        let spec = Arc::new(
            KernelKind::WoFwd
                .generate(&dims, &opts, mode, Some(&lw))
                .unwrap(),
        );
        let kernel = compile_spec(dev.as_ref(), &spec).unwrap();
        let mut r = Runner::new(dev.as_ref(), &kernel, spec, None).unwrap();
        r.stage_weights(&lw).unwrap();
        r
    }

    /// A lent output part is what `part_into` copies: in place on fp32 (the very surface
    /// memory), converted on fp16.
    #[test]
    fn a_lent_output_part_equals_the_copied_one() {
        for device in ["cpu", "ane-sim"] {
            let mut r = runner(device, WeightMode::Params);
            let x: Vec<f32> = (0..32 * 32).map(|i| (i % 7) as f32 * 0.25).collect();
            r.run(&[("attn_out", &x)]).unwrap();
            let mut copied = vec![0.0; 32 * 32];
            r.part_into("o", &mut copied).unwrap();
            let lent = r.with_part("o", |o| Ok(o.to_vec())).unwrap();
            assert_eq!(lent, copied, "{device}");
            assert!(copied.iter().any(|&v| v != 0.0));
            if device == "cpu" {
                let base = r.output.read::<f32>().unwrap().as_ptr();
                let at = r.with_part("o", |o| Ok(o.as_ptr())).unwrap();
                assert_eq!(at, base, "fp32 parts are views of the surface");
            }
            assert!(r.with_part("nope", |_| Ok(())).is_err());
        }
    }

    /// On an fp32 surface holding only the activation, the host op writes the surface itself:
    /// the staging buffer is never touched.
    #[test]
    fn a_whole_fp32_input_is_written_in_place() {
        let mut r = runner("cpu", WeightMode::Params);
        let values: Vec<f32> = (0..32 * 32).map(|i| i as f32).collect();
        r.act("attn_out", |dst| {
            dst.copy_from_slice(&values);
            Ok(())
        })
        .unwrap();
        assert_eq!(r.inputs[0].read_f32().unwrap(), values);
        assert!(r.staging[0].iter().all(|&v| v == 0.0), "no staging copy");
        r.eval().unwrap();
        let mut o = vec![0.0; 32 * 32];
        r.part_into("o", &mut o).unwrap();
    }

    /// A packed input keeps its staged weight columns when an activation block is written.
    #[test]
    fn a_packed_activation_leaves_the_weight_columns_alone() {
        let mut r = runner("cpu", WeightMode::Packed);
        let before = r.inputs[0].read_f32().unwrap();
        r.act("attn_out", |dst| {
            dst.fill(2.0);
            Ok(())
        })
        .unwrap();
        let after = r.inputs[0].read_f32().unwrap();
        let width = r.spec.inputs[0].shape[3];
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            if i % width < 32 {
                assert_eq!(*a, 2.0);
            } else {
                assert_eq!(
                    a,
                    b,
                    "weight column {} of row {} changed",
                    i % width,
                    i / width
                );
            }
        }
        assert!(before.contains(&0.5), "weights were staged");
    }

    /// With the parameter buffer given, an as-stored Params weight input IS the parameter
    /// tensor: writing the buffer changes the next evaluation, no staging involved.
    #[test]
    fn as_stored_params_weights_are_read_in_place() {
        let dims = DIMS;
        let opts = KernelOptions {
            dtype: DType::Fp32,
            weights_as_stored: true,
            ..KernelOptions::default()
        };
        // One layer's tensors laid out as the model would: Wq, Wk, Wv, Wo, W1, W2, W3.
        let sizes = [1024, 1024, 1024, 1024, 2048, 2048, 2048];
        let mut starts = vec![0];
        for s in sizes {
            starts.push(starts.last().unwrap() + s);
        }
        let r = |i: usize| starts[i]..starts[i + 1];
        let ranges = LayerRanges {
            attn_norm: 0..0,
            wq: r(0),
            wk: r(1),
            wv: r(2),
            wo: r(3),
            ffn_norm: 0..0,
            w1: r(4),
            w2: r(5),
            w3: r(6),
        };
        let mut params = vec![0.25f32; starts[7]];
        let dev = ane_runtime::open("cpu").unwrap();
        let lw = LayerWeights {
            wq: &params[r(0)],
            wk: &params[r(1)],
            wv: &params[r(2)],
            wo: &params[r(3)],
            w1: &params[r(4)],
            w2: &params[r(5)],
            w3: &params[r(6)],
        };
        let spec = Arc::new(
            KernelKind::WoFwd
                .generate(&dims, &opts, WeightMode::Params, Some(&lw))
                .unwrap(),
        );
        let kernel = compile_spec(dev.as_ref(), &spec).unwrap();
        let base = NonNull::new(params.as_mut_ptr()).unwrap();
        let in_place = ParamsInPlace {
            base,
            len: params.len(),
            ranges: &ranges,
        };
        let mut run = Runner::new(dev.as_ref(), &kernel, spec, Some(in_place)).unwrap();
        assert!(
            run.in_place[1] && !run.in_place[0],
            "the weight input is in place"
        );
        assert!(run.staging[1].is_empty(), "no staging buffer for it");
        let x = vec![1.0f32; 32 * 32];
        run.run(&[("attn_out", &x)]).unwrap();
        let mut o = vec![0.0; 32 * 32];
        run.part_into("o", &mut o).unwrap();
        assert!(
            o.iter().all(|&v| (v - 8.0).abs() < 1e-5),
            "Wo = 0.25: o = 32·0.25"
        );
        // Write Wo in the buffer (through the pointer the surfaces were made from), run again.
        // SAFETY: `base` addresses `params`, which is alive and not borrowed here; no
        // evaluation is running.
        let all = unsafe { std::slice::from_raw_parts_mut(base.as_ptr(), params.len()) };
        all[r(3)].fill(0.5);
        run.run(&[("attn_out", &x)]).unwrap();
        run.part_into("o", &mut o).unwrap();
        assert!(
            o.iter().all(|&v| (v - 16.0).abs() < 1e-5),
            "the new weights were read"
        );
        drop(run);
        drop(params);
    }
}
