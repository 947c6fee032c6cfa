//! The LLaMA-family model: one sequence's loss and exact gradients, with the matrix work on a
//! device (the kernels of [`crate::kernels`]) and the rest on the host ([`crate::host`]).
//!
//! Legend: `D` dim, `S` seq, `H` hidden, `NH`/`NKV` heads, `HD` head dim, `QD = NH·HD`,
//! `KVD = NKV·HD`, `V` vocab, `α` residual scale. Activations are channel-first `[C, S]` f32.
//!
//! Per layer, forward: `xnorm = rms(x)`; the attention block (Neural Engine set: `sdpaFwd`;
//! cpu set: `qkvFwd`'s projections, RoPE on the host, the host's fused attention) →
//! `attn_out`, `q_rope`, `k_rope`, `v`;
//! `woFwd` → `o`; `x2 = x + α·o`; `x2norm = rms(x2)`; `ffnFused` → `x_next`, `h1`, `h3`,
//! `gate`. Then the final RMSNorm and the fused, chunked classifier + cross-entropy. Backward
//! mirrors it ([`backward`]). On fp16 devices the loss is scaled before backward (the
//! trainer's dynamic [`crate::loss_scale::LossScaler`] sets it with [`Model::set_loss_scale`];
//! a new model starts at [`crate::loss_scale::START`]); the scale is divided out by the
//! caller's optimizer pass ([`Model::grad_scale`]) or, for [`Model::loss_and_grads_into`], at
//! the end.
//!
//! Modules: [`runner`] (one bound kernel), [`views`] (typed parameter ranges), [`workspace`]
//! (every step buffer, allocated at build time), [`forward`], [`backward`], [`step`] (one timed
//! pass: windows to columns, loss, backward), [`init`].

mod backward;
mod forward;
mod init;
mod runner;
mod step;
mod views;
mod workspace;

use std::sync::Arc;
use std::time::Duration;

use ane_mil::DType;
use ane_runtime::{Device, Fidelity, Kernel};

use self::forward::Trunk;
use self::runner::{compile_spec, LayerKernels, ParamsInPlace, Runner};
use self::views::ParamRanges;
use self::workspace::Workspace;
use crate::host::{self, HostError, RopeTable};
use crate::kernels::{
    KernelDims, KernelError, KernelKind, KernelOptions, KernelSet, KernelSpec, WeightMode,
};
use crate::model::{ConfigError, ModelConfig, ParamSpec};

pub use init::init_params;
pub use views::{LayerRanges, ParamRanges as Ranges};

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
    /// Everything else: host ops (norms, RoPE, GQA, attention on the cpu kernel set, loss,
    /// dW GEMMs) and bookkeeping.
    pub host: Duration,
    /// The part of `host` spent in the fused attention of the cpu kernel set.
    pub attention: Duration,
    /// The part of `host` spent in the fused classifier and cross-entropy (with its backward
    /// when gradients are taken).
    pub classifier: Duration,
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
            attention: Duration::ZERO,
            classifier: Duration::ZERO,
            per_kernel: [Duration::ZERO; KernelKind::ALL.len()],
        }
    }
}

/// How a model is built beyond its config, device, weight mode and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// The kernel set; `None` picks the device's ([`KernelSet::for_device`]).
    pub kernel_set: Option<KernelSet>,
    /// Windows per pass `B` (at least 1): every kernel runs over `[C, B·S]` columns and the
    /// loss is the mean over all `B·S` positions. More than one needs the cpu kernel set
    /// (the Neural Engine set's attention kernels see one window).
    pub batch: usize,
}

impl Default for ModelOptions {
    /// The device's kernel set, one window per pass.
    fn default() -> Self {
        ModelOptions {
            kernel_set: None,
            batch: 1,
        }
    }
}

/// A model on a device; see the module docs.
#[derive(Debug)]
pub struct Model {
    cfg: ModelConfig,
    device: Arc<dyn Device>,
    mode: WeightMode,
    set: KernelSet,
    /// Windows per pass `B`.
    batch: usize,
    opts: KernelOptions,
    dims: KernelDims,
    table: Vec<ParamSpec>,
    ranges: ParamRanges,
    /// Declared before `params`: runners may read the parameter buffer in place, so they are
    /// dropped first.
    layers: Vec<LayerKernels>,
    params: Vec<f32>,
    rope: RopeTable,
    ws: Workspace,
    loss_scale: f32,
    timings: StepTimings,
    compaction: Option<host::VocabCompaction>,
    compiles: usize,
    /// Baked kernels hold older weights than `params`.
    stale: bool,
}

impl Model {
    /// A model of `cfg` on `device` in weight mode `mode`, with parameters `params` laid out as
    /// [`ModelConfig::params`] says, running the kernel set the device calls for
    /// ([`KernelSet::for_device`]). Compiles the kernels (Baked: one set per layer).
    pub fn new(
        cfg: ModelConfig,
        device: Arc<dyn Device>,
        mode: WeightMode,
        params: Vec<f32>,
    ) -> Result<Model> {
        let set = KernelSet::for_device(device.capabilities());
        Model::with_kernel_set(cfg, device, mode, params, set)
    }

    /// [`Model::new`] with an explicit kernel set (the Neural Engine set runs on every device;
    /// the cpu set on any device that accepts its programs).
    pub fn with_kernel_set(
        cfg: ModelConfig,
        device: Arc<dyn Device>,
        mode: WeightMode,
        params: Vec<f32>,
        set: KernelSet,
    ) -> Result<Model> {
        let options = ModelOptions {
            kernel_set: Some(set),
            ..ModelOptions::default()
        };
        Model::with_options(cfg, device, mode, params, options)
    }

    /// [`Model::new`] with every option of [`ModelOptions`].
    pub fn with_options(
        cfg: ModelConfig,
        device: Arc<dyn Device>,
        mode: WeightMode,
        params: Vec<f32>,
        options: ModelOptions,
    ) -> Result<Model> {
        let set = options
            .kernel_set
            .unwrap_or_else(|| KernelSet::for_device(device.capabilities()));
        let batch = options.batch;
        if batch == 0 || (batch > 1 && set != KernelSet::Cpu) {
            return Err(ModelError::Shape(format!(
                "a batch of {batch} windows per pass: it must be at least 1, and more than 1 \
                 needs the cpu kernel set (the {} set's attention kernels see one window)",
                set.name()
            )));
        }
        let cols = cfg
            .seq_len
            .checked_mul(batch)
            .ok_or_else(|| ModelError::Shape(format!("a batch of {batch} windows overflows")))?;
        cfg.validate()?;
        let table = cfg.params();
        let total: usize = table.iter().map(ParamSpec::numel).sum();
        if params.len() != total {
            return Err(ModelError::Shape(format!(
                "{} parameters given, the config has {total}",
                params.len()
            )));
        }
        let ranges = ParamRanges::new(&cfg, &table)
            .ok_or_else(|| ModelError::Shape("the parameter table misses a tensor".into()))?;
        let fp16 = device.capabilities().fidelity == Fidelity::Ane
            || !device.capabilities().surface_dtypes.contains(&DType::Fp32);
        let opts = KernelOptions {
            dtype: if fp16 { DType::Fp16 } else { DType::Fp32 },
            alpha: cfg.residual_alpha(),
            rope_theta: cfg.rope_theta,
            // The cpu set in Params mode reads the parameter buffer in place.
            weights_as_stored: set == KernelSet::Cpu && !fp16 && mode == WeightMode::Params,
        };
        let dims = KernelDims {
            dim: cfg.dim,
            q_dim: cfg.q_dim(),
            kv_dim: cfg.kv_dim(),
            hidden: cfg.hidden_dim,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            seq: cols,
            window: cfg.seq_len,
        };
        let rope = RopeTable::windows(cfg.head_dim, cfg.seq_len, batch, cfg.rope_theta)?;
        let ws = Workspace::new(&cfg, set, batch);
        ane_runtime::cpu::gemm::reserve_scratch();
        let mut m = Model {
            cfg,
            device,
            mode,
            set,
            batch,
            opts,
            dims,
            table,
            ranges,
            layers: Vec::new(),
            params,
            rope,
            ws,
            loss_scale: if fp16 { crate::loss_scale::START } else { 1.0 },
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

    /// The kernel set the layers run.
    pub fn kernel_set(&self) -> KernelSet {
        self.set
    }

    /// Windows per pass `B`: [`Model::accumulate_grads`] takes `B` windows at a time.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The parameter table.
    pub fn param_table(&self) -> &[ParamSpec] {
        &self.table
    }

    /// Every tensor's range in [`Model::params`].
    pub fn ranges(&self) -> &Ranges {
        &self.ranges
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
        // Copied into the existing buffer, never swapped: kernels may read it in place.
        self.params.copy_from_slice(&params);
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

    /// Compiles that must happen before the next evaluation: [`Model::compiles_per_update`]
    /// when Baked kernels are stale (the parameters changed since they were built), else 0.
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

    /// Compiles the kernels of the set (Packed/Params: once per kind, shared by every layer;
    /// Baked: the weight-bearing kinds per layer, with the weights inside, and the weight-free
    /// ones once) and binds one runner per layer and kind, with the layer's weights staged.
    fn compile(&mut self) -> Result<()> {
        let mut shared: [Option<(Kernel, Arc<KernelSpec>)>; KernelKind::ALL.len()] =
            Default::default();
        let mut layers = Vec::with_capacity(self.cfg.n_layers);
        let mut compiled = 0;
        let in_place = self.opts.weights_as_stored;
        let len = self.params.len();
        // Taken before any shared borrow of the buffer below, so the pointers the in-place
        // surfaces keep derive from the buffer itself.
        let base = std::ptr::NonNull::new(self.params.as_mut_ptr())
            .ok_or_else(|| ModelError::Shape("the parameter buffer is empty".into()))?;
        for l in 0..self.cfg.n_layers {
            let w = self.ranges.layer_weights(&self.params, l);
            let params = in_place.then_some(ParamsInPlace {
                base,
                len,
                ranges: &self.ranges.layers[l],
            });
            let mut set = LayerKernels::default();
            for &kind in self.set.kinds() {
                let per_layer = self.mode == WeightMode::Baked && kind.has_weights();
                let (kernel, spec) = match &shared[kind.index()] {
                    Some((k, s)) if !per_layer => (k.clone(), s.clone()),
                    _ => {
                        let spec =
                            Arc::new(kind.generate(&self.dims, &self.opts, self.mode, Some(&w))?);
                        let kernel = compile_spec(self.device.as_ref(), &spec)?;
                        compiled += 1;
                        if !per_layer {
                            shared[kind.index()] = Some((kernel.clone(), spec.clone()));
                        }
                        (kernel, spec)
                    }
                };
                let mut runner = Runner::new(self.device.as_ref(), &kernel, spec, params)?;
                runner.stage_weights(&w)?;
                set.0[kind.index()] = Some(runner);
            }
            layers.push(set);
        }
        self.layers = layers;
        self.compiles += compiled;
        Ok(())
    }

    /// Writes every layer's current weights into its runners' surfaces.
    fn restage(&mut self) -> Result<()> {
        let Model {
            layers,
            params,
            ranges,
            ..
        } = self;
        for (l, set) in layers.iter_mut().enumerate() {
            let w = ranges.layer_weights(params, l);
            for (_, r) in set.iter_mut() {
                r.stage_weights(&w)?;
            }
        }
        Ok(())
    }

    /// The mean cross-entropy of predicting `tokens[1..=S]` from `tokens[0..S]`: one window
    /// of `S + 1` tokens, or [`Model::batch`] windows of `S + 1` one after the other (the mean
    /// over all their positions).
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
    /// (overwritten, unscaled).
    pub fn loss_and_grads_into(&mut self, tokens: &[u32], grads: &mut [f32]) -> Result<f32> {
        grads.fill(0.0);
        let loss = self.accumulate_grads(tokens, grads)?;
        let scale = self.grad_scale();
        if scale != 1.0 {
            grads.iter_mut().for_each(|g| *g *= scale);
        }
        Ok(loss)
    }

    /// The loss of [`Model::batch`] windows of `S + 1` tokens (one after the other), with its
    /// gradient ADDED to `grads`
    /// ([`Model::params`]`.len()` values) and still multiplied by the loss scale: multiply by
    /// [`Model::grad_scale`] (the optimizer does it in its own pass). Nothing is allocated.
    pub fn accumulate_grads(&mut self, tokens: &[u32], grads: &mut [f32]) -> Result<f32> {
        if grads.len() != self.params.len() {
            return Err(ModelError::Shape(format!(
                "a gradient buffer of {} values, the model has {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.timed(tokens, Some(grads))
    }

    /// The factor that turns what [`Model::accumulate_grads`] adds into the gradient:
    /// `1 / loss scale` (1 on fp32 devices).
    pub fn grad_scale(&self) -> f32 {
        1.0 / self.loss_scale
    }

    /// The loss scale: what the loss gradient is multiplied by before backward (1 on fp32
    /// devices).
    pub fn loss_scale(&self) -> f32 {
        self.loss_scale
    }

    /// Whether the kernels compute in fp16 (the `ane` and `ane-sim` devices), where the loss
    /// is scaled.
    pub fn is_fp16(&self) -> bool {
        self.opts.dtype == DType::Fp16
    }

    /// Sets the loss scale. It must be a power of two in
    /// `[loss_scale::MIN, loss_scale::MAX]` on an fp16 device and exactly 1 on an fp32 one
    /// (so [`Model::grad_scale`] is its exact inverse).
    pub fn set_loss_scale(&mut self, scale: f32) -> Result<()> {
        if !self.is_fp16() && scale != 1.0 {
            return Err(ModelError::Shape(format!(
                "loss scale {scale} on an fp32 device: it must be 1"
            )));
        }
        crate::loss_scale::check_scale(scale).map_err(ModelError::Shape)?;
        self.loss_scale = scale;
        Ok(())
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
            let rows = c.compact_vocab() * self.cfg.dim;
            self.ws.head_rows = vec![0.0; rows];
            self.ws.dhead_rows = vec![0.0; rows];
            self.ws.mapped = vec![0; self.cfg.seq_len * self.batch];
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

    /// Kernel compiles one parameter update costs: in Baked mode every weight-bearing kernel
    /// is rebuilt per layer with the new weights inside — `8·L + 2` for the Neural Engine set
    /// (its two weight-free kernels count once), `8·L` for the cpu set; 0 in Packed and Params
    /// (weights are restaged).
    pub fn compiles_per_update(&self) -> usize {
        match self.mode {
            WeightMode::Baked => {
                let kinds = self.set.kinds();
                let per_layer = kinds.iter().filter(|k| k.has_weights()).count();
                per_layer * self.cfg.n_layers + (kinds.len() - per_layer)
            }
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
        let cols = s * self.batch;
        // The context in the first window; any other window of the pass holds id 0.
        let mut inputs = context.to_vec();
        inputs.resize(cols, 0);
        let Model {
            cfg,
            set,
            ranges,
            params,
            rope,
            layers,
            ws,
            ..
        } = self;
        let trunk = Trunk {
            cfg,
            set: *set,
            cols,
            ranges,
            params,
            rope,
        };
        trunk.run(layers, ws, &inputs)?;
        let w = &params[ranges.head.clone()];
        let xf = &ws.xf;
        let col: Vec<f32> = (0..d).map(|k| xf[k * cols + pos]).collect();
        Ok((0..v)
            .map(|r| {
                let row = &w[r * d..(r + 1) * d];
                row.iter().zip(&col).map(|(a, b)| a * b).sum()
            })
            .collect())
    }
}
