//! The LLaMA-family model: one sequence's loss and exact gradients, with the matrix work on a
//! device (the ten kernels of [`crate::kernels`]) and the rest on the host ([`crate::host`]).
//!
//! Legend: `D` dim, `S` seq, `H` hidden, `NH`/`NKV` heads, `HD` head dim, `QD = NH·HD`,
//! `KVD = NKV·HD`, `V` vocab, `α` residual scale. Activations are channel-first `[C, S]` f32.
//!
//! Per layer, forward: `xnorm = rms(x)`; `sdpaFwd` → attention, `q_rope`, `k_rope`, `v`;
//! `woFwd` → `o`; `x2 = x + α·o`; `x2norm = rms(x2)`; `ffnFused` → `x_next`, `h1`, `h3`,
//! `gate`. Then the final RMSNorm, the tied classifier and cross-entropy on the host.
//! Backward mirrors it (see [`Model::loss_and_grads`]): dx kernels on the device, dW GEMMs
//! and RMSNorm/SiLU/RoPE/GQA backward on the host. On fp16 devices the loss is scaled before
//! backward and the gradients are unscaled at the end.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ane_mil::DType;
use ane_runtime::{Binding, Device, Fidelity, Kernel, Surface, Weights};

use crate::host::{self, Gemm, HostError, RopeTable};
use crate::kernels::{
    BlockContent, KernelDims, KernelError, KernelKind, KernelOptions, KernelSpec, LayerWeights,
    WeightMode,
};
use crate::model::{ConfigError, ModelConfig, ParamKind, ParamSpec};

/// Loss scale used on fp16 devices (upstream's constant).
pub const FP16_LOSS_SCALE: f32 = 256.0;

/// Errors of the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A kernel could not be generated.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A host op was given bad arguments.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The device failed.
    #[error(transparent)]
    Runtime(#[from] ane_runtime::Error),
    /// The parameter buffer or the token window has the wrong size.
    #[error("{0}")]
    Shape(String),
}

type Result<T> = std::result::Result<T, ModelError>;

/// One layer's binding of a compiled kernel: its surfaces and host staging buffers. Weight
/// blocks are staged once ([`Runner::stage_weights`]); each run writes only activations.
#[derive(Debug)]
struct Runner {
    spec: Arc<KernelSpec>,
    inputs: Vec<Surface>,
    output: Surface,
    binding: Binding,
    staging: Vec<Vec<f32>>,
    /// Per input, a buffer for one activation block when it cannot be written in place.
    scratch: Vec<Vec<f32>>,
    /// Time spent in `Binding::eval` since the last [`Model::timings`] reset.
    device: Duration,
    /// Time spent moving data into and out of surfaces since then.
    traffic: Duration,
}

/// Compiles `spec` on `device`.
fn compile_spec(device: &dyn Device, spec: &KernelSpec) -> Result<Kernel> {
    let mut weights = Weights::new();
    for (path, bytes) in &spec.weights {
        weights.insert(path.clone(), bytes.clone());
    }
    Ok(device.compile(&spec.program, &weights)?)
}

impl Runner {
    /// Binds `kernel` (compiled from `spec`) to fresh surfaces: every input of one allocation
    /// size, as the Neural Engine requires.
    fn new(device: &dyn Device, kernel: &Kernel, spec: Arc<KernelSpec>) -> Result<Runner> {
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
        let scratch = spec.inputs.iter().map(|_| Vec::new()).collect();
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
    fn stage_weights(&mut self, w: &LayerWeights<'_>) -> Result<()> {
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
    fn act(&mut self, name: &str, fill: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
        let i = self
            .spec
            .inputs
            .iter()
            .position(|slot| slot.blocks.iter().any(|b| b.name == name))
            .ok_or_else(|| ModelError::Shape(format!("the kernel has no activation `{name}`")))?;
        let (slot, surface) = (&self.spec.inputs[i], &self.inputs[i]);
        let block = slot.block(name)?.clone();
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
                block.channels,
                block.columns,
                &self.staging[i],
            )?;
        }
        self.traffic += t1.elapsed();
        Ok(())
    }

    /// Writes the activation blocks `acts` (by block name) and evaluates.
    fn run(&mut self, acts: &[(&str, &[f32])]) -> Result<()> {
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
    fn eval(&mut self) -> Result<()> {
        let t = Instant::now();
        self.binding.eval()?;
        self.device += t.elapsed();
        Ok(())
    }

    /// Output part `name` (`[channels, S]`), read from the output surface.
    fn part(&mut self, name: &str) -> Result<Vec<f32>> {
        let t = Instant::now();
        let out = &self.spec.outputs[0];
        let ch = out.part(name)?;
        let s = out.shape[3];
        let mut v = vec![0.0; ch.len() * s];
        self.output.read_f32_into(ch.start * s, &mut v)?;
        self.traffic += t.elapsed();
        Ok(v)
    }
}

/// One layer's runners, one per kernel kind.
#[derive(Debug)]
struct KernelSet(HashMap<KernelKind, Runner>);

impl KernelSet {
    fn get(&mut self, k: KernelKind) -> Result<&mut Runner> {
        self.0
            .get_mut(&k)
            .ok_or_else(|| ModelError::Shape(format!("kernel {} was not compiled", k.name())))
    }
}

/// Activations saved by the forward pass of one layer for backward.
#[derive(Debug, Default)]
struct Saved {
    x: Vec<f32>,
    xnorm: Vec<f32>,
    attn_out: Vec<f32>,
    q_rope: Vec<f32>,
    k_rope: Vec<f32>,
    v: Vec<f32>,
    x2: Vec<f32>,
    x2norm: Vec<f32>,
    h1: Vec<f32>,
    h3: Vec<f32>,
    gate: Vec<f32>,
}

/// Where the time of the last [`Model::loss`] / [`Model::loss_and_grads`] went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTimings {
    /// Wall time of the whole call.
    pub total: Duration,
    /// Inside device kernel evaluations.
    pub device: Duration,
    /// Writing kernel inputs (activations, and weights in Packed/Params) into surfaces and
    /// reading outputs back.
    pub traffic: Duration,
    /// Everything else: host ops (norms, RoPE, GQA, loss, dW GEMMs) and bookkeeping.
    pub host: Duration,
    /// Device time per kernel kind, summed over layers, in the order of [`KernelKind::ALL`].
    pub per_kernel: [Duration; KernelKind::ALL.len()],
}

impl Default for StepTimings {
    fn default() -> Self {
        StepTimings {
            total: Duration::ZERO,
            device: Duration::ZERO,
            traffic: Duration::ZERO,
            host: Duration::ZERO,
            per_kernel: [Duration::ZERO; KernelKind::ALL.len()],
        }
    }
}

/// A model on a device; see the module docs.
#[derive(Debug)]
pub struct Model {
    cfg: ModelConfig,
    device: Arc<dyn Device>,
    mode: WeightMode,
    opts: KernelOptions,
    dims: KernelDims,
    table: Vec<ParamSpec>,
    index: HashMap<(ParamKind, Option<usize>), Range<usize>>,
    params: Vec<f32>,
    rope: RopeTable,
    sets: Vec<KernelSet>,
    loss_scale: f32,
    timings: StepTimings,
    compaction: Option<host::VocabCompaction>,
    compiles: usize,
    /// Baked kernels hold older weights than `params`.
    stale: bool,
}

impl Model {
    /// A model of `cfg` on `device` in weight mode `mode`, with parameters `params` laid out as
    /// [`ModelConfig::params`] says. Compiles the kernels (Baked: one set per layer).
    pub fn new(
        cfg: ModelConfig,
        device: Arc<dyn Device>,
        mode: WeightMode,
        params: Vec<f32>,
    ) -> Result<Model> {
        cfg.validate()?;
        let table = cfg.params();
        let total: usize = table.iter().map(ParamSpec::numel).sum();
        if params.len() != total {
            return Err(ModelError::Shape(format!(
                "{} parameters given, the config has {total}",
                params.len()
            )));
        }
        let index = table
            .iter()
            .map(|s| ((s.kind, s.layer), s.range()))
            .collect();
        let fp16 = device.capabilities().fidelity == Fidelity::Ane
            || !device.capabilities().surface_dtypes.contains(&DType::Fp32);
        let opts = KernelOptions {
            dtype: if fp16 { DType::Fp16 } else { DType::Fp32 },
            alpha: cfg.residual_alpha(),
            rope_theta: cfg.rope_theta,
        };
        let dims = KernelDims {
            dim: cfg.dim,
            q_dim: cfg.q_dim(),
            kv_dim: cfg.kv_dim(),
            hidden: cfg.hidden_dim,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            seq: cfg.seq_len,
        };
        let rope = RopeTable::new(cfg.head_dim, cfg.seq_len, cfg.rope_theta)?;
        let mut m = Model {
            cfg,
            device,
            mode,
            opts,
            dims,
            table,
            index,
            params,
            rope,
            sets: Vec::new(),
            loss_scale: if fp16 { FP16_LOSS_SCALE } else { 1.0 },
            timings: StepTimings::default(),
            compaction: None,
            compiles: 0,
            stale: false,
        };
        m.compile()?;
        Ok(m)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The parameter table.
    pub fn param_table(&self) -> &[ParamSpec] {
        &self.table
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Replaces the parameters (Baked mode: the kernels are recompiled before the next
    /// evaluation, see [`Model::recompile_if_stale`]).
    pub fn set_params(&mut self, params: Vec<f32>) -> Result<()> {
        if params.len() != self.params.len() {
            return Err(ModelError::Shape(format!(
                "{} parameters given, expected {}",
                params.len(),
                self.params.len()
            )));
        }
        self.params = params;
        self.refresh()
    }

    /// Makes the device see the current parameters: Packed/Params restage now; Baked marks
    /// the kernels stale, to be recompiled before the next evaluation — so an update whose
    /// kernels are never run (the last one before a restart) costs no compiles.
    fn refresh(&mut self) -> Result<()> {
        if self.mode == WeightMode::Baked {
            self.stale = true;
            Ok(())
        } else {
            self.restage()
        }
    }

    /// Compiles that must happen before the next evaluation: `8·L + 2` when Baked kernels
    /// are stale (the parameters changed since they were built), else 0.
    pub fn pending_compiles(&self) -> usize {
        if self.stale {
            self.compiles_per_update()
        } else {
            0
        }
    }

    /// Recompiles stale Baked kernels now (every evaluation does it first anyway; call it to
    /// time it apart). Returns the number of kernels compiled.
    pub fn recompile_if_stale(&mut self) -> Result<usize> {
        if !self.stale {
            return Ok(0);
        }
        let before = self.compiles;
        self.compile()?;
        self.stale = false;
        Ok(self.compiles - before)
    }

    /// Compiles the kernels (Packed/Params: once per kind, shared by every layer; Baked: the
    /// eight weight-bearing kinds per layer, with the weights inside, and the two weight-free
    /// ones once) and binds one runner per layer and kind, with the layer's weights staged.
    /// Compiles: 10 for Packed/Params, `8·L + 2` for Baked (98 for Stories110M, inside the
    /// default budget of 100).
    fn compile(&mut self) -> Result<()> {
        let mut shared: HashMap<KernelKind, (Kernel, Arc<KernelSpec>)> = HashMap::new();
        let mut sets = Vec::with_capacity(self.cfg.n_layers);
        let mut compiled = 0;
        for l in 0..self.cfg.n_layers {
            let w = self.layer_weights(l);
            let mut set = HashMap::new();
            for kind in KernelKind::ALL {
                // Weight-free kernels are the same program for every layer in every mode.
                let per_layer = self.mode == WeightMode::Baked
                    && !matches!(kind, KernelKind::SdpaBwd1 | KernelKind::SdpaBwd2);
                let (kernel, spec) = match shared.get(&kind) {
                    Some((k, s)) if !per_layer => (k.clone(), s.clone()),
                    _ => {
                        let spec =
                            Arc::new(kind.generate(&self.dims, &self.opts, self.mode, Some(&w))?);
                        let kernel = compile_spec(self.device.as_ref(), &spec)?;
                        compiled += 1;
                        if !per_layer {
                            shared.insert(kind, (kernel.clone(), spec.clone()));
                        }
                        (kernel, spec)
                    }
                };
                let mut runner = Runner::new(self.device.as_ref(), &kernel, spec)?;
                runner.stage_weights(&w)?;
                set.insert(kind, runner);
            }
            sets.push(KernelSet(set));
        }
        self.sets = sets;
        self.compiles += compiled;
        Ok(())
    }

    /// Writes every layer's current weights into its runners' surfaces.
    fn restage(&mut self) -> Result<()> {
        let Model {
            sets,
            params,
            index,
            ..
        } = self;
        for (l, set) in sets.iter_mut().enumerate() {
            let w = layer_weights_of(params, index, l);
            for r in set.0.values_mut() {
                r.stage_weights(&w)?;
            }
        }
        Ok(())
    }

    fn layer_weights(&self, l: usize) -> LayerWeights<'_> {
        layer_weights_of(&self.params, &self.index, l)
    }

    /// The mean cross-entropy of predicting `tokens[1..=S]` from `tokens[0..S]`.
    pub fn loss(&mut self, tokens: &[u32]) -> Result<f32> {
        self.timed(tokens, None)
    }

    /// The loss and the gradient of every parameter (same layout as the parameters) for one
    /// window of `S + 1` tokens.
    pub fn loss_and_grads(&mut self, tokens: &[u32]) -> Result<(f32, Vec<f32>)> {
        let mut grads = vec![0.0; self.params.len()];
        let loss = self.loss_and_grads_into(tokens, &mut grads)?;
        Ok((loss, grads))
    }

    /// [`Model::loss_and_grads`] into a caller's buffer of [`Model::params`]`.len()` values
    /// (overwritten), so a trainer reuses one buffer instead of mapping and faulting in a fresh
    /// one every step (440 MB for Stories110M).
    pub fn loss_and_grads_into(&mut self, tokens: &[u32], grads: &mut [f32]) -> Result<f32> {
        if grads.len() != self.params.len() {
            return Err(ModelError::Shape(format!(
                "a gradient buffer of {} values, the model has {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.timed(tokens, Some(grads))
    }

    /// Restricts the classifier and the loss to the token ids of `compaction` (an explicit
    /// option, as upstream always did: with a 32K–152K vocabulary and a corpus that uses a few
    /// thousand ids it saves most of the classifier's work). What it changes is in
    /// [`host::VocabCompaction::report`]: the softmax runs over the active ids only, so the loss
    /// is not comparable with a full-vocabulary loss, and inactive rows of the classifier get
    /// no gradient. Every target must be active. `None` restores the full vocabulary.
    pub fn set_vocab_compaction(
        &mut self,
        compaction: Option<host::VocabCompaction>,
    ) -> Result<()> {
        if let Some(c) = &compaction {
            if c.full_vocab() != self.cfg.vocab_size {
                return Err(ModelError::Shape(format!(
                    "the compaction is over {} ids, the model's vocabulary has {}",
                    c.full_vocab(),
                    self.cfg.vocab_size
                )));
            }
        }
        self.compaction = compaction;
        Ok(())
    }

    /// Where the time of the last call went.
    pub fn timings(&self) -> StepTimings {
        self.timings
    }

    /// Kernels this model has compiled so far (its build and every Baked update).
    pub fn compile_count(&self) -> usize {
        self.compiles
    }

    /// The weight mode.
    pub fn mode(&self) -> WeightMode {
        self.mode
    }

    /// The device the kernels run on.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.device
    }

    /// Kernel compiles one parameter update costs: `8·L + 2` in Baked mode (every kernel is
    /// rebuilt with the new weights inside), 0 in Packed and Params (weights are restaged).
    pub fn compiles_per_update(&self) -> usize {
        match self.mode {
            WeightMode::Baked => 8 * self.cfg.n_layers + 2,
            WeightMode::Packed | WeightMode::Params => 0,
        }
    }

    /// Changes the parameters in place through `f` (same layout as [`Model::params`]), then
    /// makes the device see them: Packed/Params restage the weight blocks; Baked kernels are
    /// recompiled before the next evaluation ([`Model::pending_compiles`]).
    pub fn update_params(&mut self, f: impl FnOnce(&mut [f32])) -> Result<()> {
        f(&mut self.params);
        self.refresh()
    }

    /// The next-token logits `[V]` after `context[..=pos]`.
    ///
    /// `context` holds at most `S` ids; it is padded with id 0 to a full window, which cannot
    /// change position `pos` because attention is causal. One forward pass of the window.
    pub fn logits_at(&mut self, context: &[u32], pos: usize) -> Result<Vec<f32>> {
        let (d, s, v) = (self.cfg.dim, self.cfg.seq_len, self.cfg.vocab_size);
        if context.is_empty() || context.len() > s || pos >= context.len() {
            return Err(ModelError::Shape(format!(
                "logits_at needs 1..={s} context tokens and a position inside them, got {} \
                 tokens and position {pos}",
                context.len()
            )));
        }
        self.recompile_if_stale()?;
        let mut inputs = context.to_vec();
        inputs.resize(s, 0);
        let Model {
            cfg,
            index,
            params,
            sets,
            ..
        } = self;
        let xf = trunk(cfg, index, params, sets, &inputs)?.xf;
        let w = &params[index[&(head_kind(cfg), None)].clone()];
        let col: Vec<f32> = (0..d).map(|k| xf[k * s + pos]).collect();
        Ok((0..v)
            .map(|r| {
                let row = &w[r * d..(r + 1) * d];
                row.iter().zip(&col).map(|(a, b)| a * b).sum()
            })
            .collect())
    }

    fn timed(&mut self, tokens: &[u32], grads: Option<&mut [f32]>) -> Result<f32> {
        self.recompile_if_stale()?;
        let t = Instant::now();
        let out = self.run(tokens, grads);
        let total = t.elapsed();
        let (mut device, mut traffic) = (Duration::ZERO, Duration::ZERO);
        let mut per_kernel = [Duration::ZERO; KernelKind::ALL.len()];
        for set in &mut self.sets {
            for (kind, r) in set.0.iter_mut() {
                let d = std::mem::take(&mut r.device);
                device += d;
                if let Some(i) = KernelKind::ALL.iter().position(|k| k == kind) {
                    per_kernel[i] += d;
                }
                traffic += std::mem::take(&mut r.traffic);
            }
        }
        self.timings = StepTimings {
            total,
            device,
            traffic,
            host: total.saturating_sub(device + traffic),
            per_kernel,
        };
        out
    }

    /// Forward (and, given a gradient buffer, backward, overwriting it).
    fn run(&mut self, tokens: &[u32], grads: Option<&mut [f32]>) -> Result<f32> {
        let Model {
            cfg: c,
            index,
            params,
            rope,
            sets,
            loss_scale,
            compaction,
            ..
        } = self;
        let (d, s, v) = (c.dim, c.seq_len, c.vocab_size);
        if tokens.len() != s + 1 {
            return Err(ModelError::Shape(format!(
                "a window holds seq_len + 1 = {} tokens, got {}",
                s + 1,
                tokens.len()
            )));
        }
        let (inputs, targets) = (&tokens[..s], &tokens[1..]);
        let alpha = c.residual_alpha();
        let get = |k: ParamKind, l: Option<usize>| &params[index[&(k, l)].clone()];
        let Trunk { x, saved, xf } = trunk(c, index, params, sets, inputs)?;
        let head = head_kind(c);
        let (cv, head_w, mapped) = match compaction.as_ref() {
            None => (v, get(head, None).to_vec(), targets.to_vec()),
            Some(comp) => {
                let cv = comp.compact_vocab();
                let mut w = vec![0.0; cv * d];
                comp.gather_rows(&mut w, get(head, None), d)?;
                let mut mapped = vec![0; s];
                comp.map_targets(&mut mapped, targets)?;
                (cv, w, mapped)
            }
        };
        let mut logits = vec![0.0; cv * s];
        host::classifier_forward(&mut logits, &head_w, &xf, cv, d, s)?;
        let loss = host::cross_entropy(&mut logits, &mapped, cv, *loss_scale)?;
        let Some(grads) = grads else {
            return Ok(loss);
        };
        grads.fill(0.0);
        let embed_range = index[&(ParamKind::Embed, None)].clone();
        let mut dxf = vec![0.0; d * s];
        let head_range = index[&(head, None)].clone();
        let mut dhead = vec![0.0; cv * d];
        host::classifier_backward(&mut dxf, &mut dhead, &logits, &head_w, &xf, cv, d, s)?;
        match compaction.as_ref() {
            None => grads[head_range]
                .iter_mut()
                .zip(&dhead)
                .for_each(|(g, h)| *g += h),
            Some(comp) => comp.scatter_add_rows(&mut grads[head_range], &dhead, d)?,
        }
        let mut dx = vec![0.0; d * s];
        let fr = index[&(ParamKind::FinalNorm, None)].clone();
        host::rmsnorm_backward(
            &mut dx,
            &mut grads[fr],
            &dxf,
            &x,
            get(ParamKind::FinalNorm, None),
            d,
            s,
            c.norm_eps,
        )?;
        for l in (0..c.n_layers).rev() {
            let ranges = |k: ParamKind| index[&(k, Some(l))].clone();
            let ctx = BackwardCtx {
                cfg: c,
                rope,
                ranges: &ranges,
                params,
                alpha,
            };
            dx = layer_backward(&mut sets[l], &ctx, &saved[l], &dx, grads)?;
        }
        host::embedding_backward(&mut grads[embed_range], inputs, &dx, v, d)?;
        if *loss_scale != 1.0 {
            let inv = 1.0 / *loss_scale;
            grads.iter_mut().for_each(|g| *g *= inv);
        }
        Ok(loss)
    }
}

/// The classifier's parameter: the embedding when tied.
fn head_kind(c: &ModelConfig) -> ParamKind {
    if c.tied_classifier {
        ParamKind::Embed
    } else {
        ParamKind::Classifier
    }
}

/// What the forward pass through the layers leaves: the last layer's output `x [D, S]`, each
/// layer's saved activations, and the final RMSNorm's output `xf [D, S]`.
struct Trunk {
    x: Vec<f32>,
    saved: Vec<Saved>,
    xf: Vec<f32>,
}

/// Embedding, every layer and the final RMSNorm over `inputs` (`S` token ids).
fn trunk(
    c: &ModelConfig,
    index: &HashMap<(ParamKind, Option<usize>), Range<usize>>,
    params: &[f32],
    sets: &mut [KernelSet],
    inputs: &[u32],
) -> Result<Trunk> {
    let (d, s, v) = (c.dim, c.seq_len, c.vocab_size);
    let get = |k: ParamKind, l: Option<usize>| &params[index[&(k, l)].clone()];
    let mut x = vec![0.0; d * s];
    host::embedding_forward(&mut x, inputs, get(ParamKind::Embed, None), v, d)?;
    let mut saved: Vec<Saved> = Vec::with_capacity(c.n_layers);
    for (l, set) in sets.iter_mut().enumerate() {
        let norms = (
            get(ParamKind::AttnNorm, Some(l)),
            get(ParamKind::FfnNorm, Some(l)),
        );
        let (sv, next) = layer_forward(set, c, norms, &x, c.residual_alpha())?;
        saved.push(sv);
        x = next;
    }
    let mut xf = vec![0.0; d * s];
    host::rmsnorm_forward(
        &mut xf,
        &x,
        get(ParamKind::FinalNorm, None),
        d,
        s,
        c.norm_eps,
    )?;
    Ok(Trunk { x, saved, xf })
}

/// Runs layer `l`'s forward: returns what backward needs and the layer's output.
fn layer_forward(
    set: &mut KernelSet,
    c: &ModelConfig,
    (att_norm, ffn_norm): (&[f32], &[f32]),
    x: &[f32],
    alpha: f32,
) -> Result<(Saved, Vec<f32>)> {
    let (d, s, eps) = (c.dim, c.seq_len, c.norm_eps);
    // The RMSNorm writes straight into the kernel's input where the layout allows; the saved
    // copy comes back through the kernel's pass-through output.
    let sdpa = set.get(KernelKind::SdpaFwd)?;
    sdpa.act("xnorm", |dst| {
        Ok(host::rmsnorm_forward(dst, x, att_norm, d, s, eps)?)
    })?;
    sdpa.eval()?;
    let xnorm = sdpa.part("xnorm")?;
    let attn_out = sdpa.part("attn_out")?;
    let q_rope = sdpa.part("q_rope")?;
    let k_rope = sdpa.part("k_rope")?;
    let v = sdpa.part("v")?;
    let wo = set.get(KernelKind::WoFwd)?;
    wo.run(&[("attn_out", &attn_out)])?;
    let mut x2 = vec![0.0; d * s];
    host::residual_forward(&mut x2, x, &wo.part("o")?, alpha)?;
    let mut x2norm = vec![0.0; d * s];
    host::rmsnorm_forward(&mut x2norm, &x2, ffn_norm, d, s, eps)?;
    let ffn = set.get(KernelKind::FfnFused)?;
    ffn.run(&[("x2norm", &x2norm), ("x2", &x2)])?;
    let sv = Saved {
        x: x.to_vec(),
        xnorm,
        attn_out,
        q_rope,
        k_rope,
        v,
        h1: ffn.part("h1")?,
        h3: ffn.part("h3")?,
        gate: ffn.part("gate")?,
        x2,
        x2norm,
    };
    Ok((sv, ffn.part("x_next")?))
}

/// What one layer's backward reads besides its saved activations.
struct BackwardCtx<'a, F: Fn(ParamKind) -> Range<usize>> {
    cfg: &'a ModelConfig,
    rope: &'a RopeTable,
    ranges: &'a F,
    params: &'a [f32],
    alpha: f32,
}

/// Back-propagates `dy` (gradient of the layer's output) through one layer, accumulating
/// weight gradients into `grads`; returns the gradient of the layer's input.
fn layer_backward<F: Fn(ParamKind) -> Range<usize>>(
    set: &mut KernelSet,
    cx: &BackwardCtx<'_, F>,
    sv: &Saved,
    dy: &[f32],
    grads: &mut [f32],
) -> Result<Vec<f32>> {
    let c = cx.cfg;
    let (d, s, hid, qd, kvd) = (c.dim, c.seq_len, c.hidden_dim, c.q_dim(), c.kv_dim());
    let (nh, nkv, hd, alpha) = (c.n_heads, c.n_kv_heads, c.head_dim, cx.alpha);
    let r = cx.ranges;
    let acc = |m, n| Gemm::new(m, n, s).b_transposed().accumulating();
    // Each weight-gradient GEMM runs on the rayon pool beside the next device kernel
    // (`host::overlap_dw`), as upstream's async dW queue does.
    // FFN: dffn = α·dy; dgate = W2ᵀ·dffn; SwiGLU backward; dx_ffn = W1ᵀ·dh1 + W3ᵀ·dh3.
    let dffn: Vec<f32> = dy.iter().map(|g| g * alpha).collect();
    let k = set.get(KernelKind::FfnBwdW2t)?;
    k.run(&[("dffn", &dffn)])?;
    let dgate = k.part("dgate")?;
    let (mut dh1, mut dh3) = (vec![0.0; hid * s], vec![0.0; hid * s]);
    host::swiglu_backward(&mut dh1, &mut dh3, &dgate, &sv.h1, &sv.h3)?;
    let [g2] = disjoint_mut(grads, [r(ParamKind::W2)])?;
    let jobs = vec![job(g2, &dffn, &sv.gate, acc(d, hid))];
    let dx_ffn = host::overlap_dw(jobs, || -> Result<Vec<f32>> {
        let k = set.get(KernelKind::FfnBwdW13t)?;
        k.run(&[("dh1", &dh1), ("dh3", &dh3)])?;
        k.part("dx_ffn")
    })??;
    let mut dx2 = dy.to_vec();
    let ffn_norm = &cx.params[r(ParamKind::FfnNorm)];
    host::rmsnorm_backward(
        &mut dx2,
        &mut grads[r(ParamKind::FfnNorm)],
        &dx_ffn,
        &sv.x2,
        ffn_norm,
        d,
        s,
        c.norm_eps,
    )?;
    // Attention output projection: da = Woᵀ·(α·dx2), beside dW1 and dW3.
    let dx2s: Vec<f32> = dx2.iter().map(|g| g * alpha).collect();
    let [g1, g3] = disjoint_mut(grads, [r(ParamKind::W1), r(ParamKind::W3)])?;
    let jobs = vec![
        job(g1, &dh1, &sv.x2norm, acc(hid, d)),
        job(g3, &dh3, &sv.x2norm, acc(hid, d)),
    ];
    let da = host::overlap_dw(jobs, || -> Result<Vec<f32>> {
        let k = set.get(KernelKind::WotBwd)?;
        k.run(&[("dx2_scaled", &dx2s)])?;
        k.part("da")
    })??;
    // Attention: K and V tiled to the query heads, back through softmax (beside dWo).
    let (mut k_tiled, mut v_tiled) = (vec![0.0; qd * s], vec![0.0; qd * s]);
    host::gqa_tile(&mut k_tiled, &sv.k_rope, nh, nkv, hd, s)?;
    host::gqa_tile(&mut v_tiled, &sv.v, nh, nkv, hd, s)?;
    let [go] = disjoint_mut(grads, [r(ParamKind::Wo)])?;
    let jobs = vec![job(go, &dx2s, &sv.attn_out, acc(d, qd))];
    let (dv_full, dq_rope, dk_full) =
        host::overlap_dw(jobs, || -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
            let k = set.get(KernelKind::SdpaBwd1)?;
            let acts = [
                ("q_rope", &sv.q_rope[..]),
                ("k_tiled", &k_tiled),
                ("v_tiled", &v_tiled),
                ("da", &da),
            ];
            k.run(&acts)?;
            let dv_full = k.part("dv_full")?;
            let probs = k.part("probs")?;
            let dp = k.part("dp")?;
            let k = set.get(KernelKind::SdpaBwd2)?;
            let acts = [
                ("probs", &probs[..]),
                ("dp", &dp),
                ("q_rope", &sv.q_rope),
                ("k_tiled", &k_tiled),
            ];
            k.run(&acts)?;
            Ok((dv_full, k.part("dq_rope")?, k.part("dk_full")?))
        })??;
    // Group reduction and inverse RoPE on the host, then dx through Wq, Wk, Wv (beside their dW).
    let (mut dk_rope, mut dv) = (vec![0.0; kvd * s], vec![0.0; kvd * s]);
    host::gqa_reduce(&mut dk_rope, &dk_full, nh, nkv, hd, s)?;
    host::gqa_reduce(&mut dv, &dv_full, nh, nkv, hd, s)?;
    let (mut dq, mut dk) = (vec![0.0; qd * s], vec![0.0; kvd * s]);
    host::rope_backward(&mut dq, &dq_rope, cx.rope, nh, hd, s)?;
    host::rope_backward(&mut dk, &dk_rope, cx.rope, nkv, hd, s)?;
    let [gq, gk, gv] = disjoint_mut(
        grads,
        [r(ParamKind::Wq), r(ParamKind::Wk), r(ParamKind::Wv)],
    )?;
    let jobs = vec![
        job(gq, &dq, &sv.xnorm, acc(qd, d)),
        job(gk, &dk, &sv.xnorm, acc(kvd, d)),
        job(gv, &dv, &sv.xnorm, acc(kvd, d)),
    ];
    let dxn = host::overlap_dw(jobs, || -> Result<Vec<f32>> {
        let k = set.get(KernelKind::QBwd)?;
        k.run(&[("dq", &dq)])?;
        let mut dxn = k.part("dx_q")?;
        let k = set.get(KernelKind::KvBwd)?;
        k.run(&[("dk", &dk), ("dv", &dv)])?;
        dxn.iter_mut()
            .zip(k.part("dx_kv")?)
            .for_each(|(a, b)| *a += b);
        Ok(dxn)
    })??;
    let mut dx = dx2;
    let att_norm = &cx.params[r(ParamKind::AttnNorm)];
    host::rmsnorm_backward(
        &mut dx,
        &mut grads[r(ParamKind::AttnNorm)],
        &dxn,
        &sv.x,
        att_norm,
        d,
        s,
        c.norm_eps,
    )?;
    Ok(dx)
}

/// A weight-gradient job for [`host::overlap_dw`].
fn job<'a>(c: &'a mut [f32], a: &'a [f32], b: &'a [f32], gemm: Gemm) -> host::DwGemm<'a> {
    host::DwGemm { c, a, b, gemm }
}

/// `N` mutable slices of `buf` over non-overlapping `ranges` (any order).
fn disjoint_mut<const N: usize>(
    buf: &mut [f32],
    ranges: [Range<usize>; N],
) -> Result<[&mut [f32]; N]> {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: [&mut [f32]; N] = std::array::from_fn(|_| <&mut [f32]>::default());
    let mut rest = buf;
    let mut at = 0;
    for &i in &order {
        let r = &ranges[i];
        if r.start < at || r.end > at + rest.len() {
            return Err(ModelError::Shape(format!(
                "overlapping or out-of-range gradient ranges {ranges:?}"
            )));
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (mine, tail) = tail.split_at_mut(r.end - r.start);
        out[i] = mine;
        rest = tail;
        at = r.end;
    }
    Ok(out)
}

fn layer_weights_of<'a>(
    params: &'a [f32],
    index: &HashMap<(ParamKind, Option<usize>), Range<usize>>,
    l: usize,
) -> LayerWeights<'a> {
    let g = |k| &params[index[&(k, Some(l))].clone()];
    LayerWeights {
        wq: g(ParamKind::Wq),
        wk: g(ParamKind::Wk),
        wv: g(ParamKind::Wv),
        wo: g(ParamKind::Wo),
        w1: g(ParamKind::W1),
        w2: g(ParamKind::W2),
        w3: g(ParamKind::W3),
    }
}

/// Random initial parameters for `cfg`, laid out as [`ModelConfig::params`]: uniform in
/// `(-s, s)` per tensor with upstream's scales — `Wq, Wk, Wv`: `1/√D`; `Wo`: `1/√QD · 1/√(2L)`;
/// `W1, W3`: `1/√H`; `W2`: `1/√D · 1/√(2L)`; embedding and classifier `0.02`; RMSNorm weights 1.
/// Deterministic for a given `seed` ([`crate::rng::Rng`]).
pub fn init_params(cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut uniform = move || rng.symmetric();
    let depth = 1.0 / (2.0 * cfg.n_layers as f32).sqrt();
    let inv_sqrt = |n: usize| 1.0 / (n as f32).sqrt();
    let mut out = Vec::with_capacity(cfg.param_count());
    for spec in cfg.params() {
        let scale = match spec.kind {
            ParamKind::AttnNorm | ParamKind::FfnNorm | ParamKind::FinalNorm => {
                out.extend(std::iter::repeat_n(1.0, spec.numel()));
                continue;
            }
            ParamKind::Wq | ParamKind::Wk | ParamKind::Wv => inv_sqrt(cfg.dim),
            ParamKind::Wo => inv_sqrt(cfg.q_dim()) * depth,
            ParamKind::W1 | ParamKind::W3 => inv_sqrt(cfg.hidden_dim),
            ParamKind::W2 => inv_sqrt(cfg.dim) * depth,
            ParamKind::Embed | ParamKind::Classifier => 0.02,
        };
        out.extend((0..spec.numel()).map(|_| uniform() * scale));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(device: &str, mode: WeightMode) -> Runner {
        let dims = KernelDims {
            dim: 32,
            q_dim: 32,
            kv_dim: 32,
            hidden: 64,
            n_heads: 2,
            n_kv_heads: 2,
            head_dim: 16,
            seq: 32,
        };
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
        let mut r = Runner::new(dev.as_ref(), &kernel, spec).unwrap();
        r.stage_weights(&lw).unwrap();
        r
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
        assert_eq!(r.part("o").unwrap().len(), 32 * 32);
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
}
