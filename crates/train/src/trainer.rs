//! The training loop: gradient accumulation, AdamW, the compile budget, checkpoints.
//!
//! One update ([`Trainer::step`]) draws `accum` windows of `S + 1` tokens, averages their
//! gradients, clips and applies AdamW at the scheduled learning rate, and hands the new
//! weights to the device (Packed/Params: restaged; Baked: recompiled). Everything the next
//! update depends on — parameters, both moments, AdamW's step count, the sampler's state, the
//! step — is in the checkpoint, so a resumed run is bit for bit the run that was not stopped
//! (on the same device and weight mode). That includes the loss scaler's state.
//!
//! Loss scaling: on fp16 devices the gradient is computed at a dynamic loss scale
//! ([`LossScaler`]). An update whose gradient or loss is not finite is skipped (parameters and
//! AdamW state untouched) and the scale halved; after a run of clean updates it doubles. Only
//! overflows at the scale's floor (1, always the case on fp32 devices) count towards
//! [`MAX_SKIPPED_IN_A_ROW`]: at scale 1 the gradient is not finite even unscaled, so more
//! halving cannot help.
//!
//! The compile budget: in Baked mode new weights mean recompiling `8·L + 2` kernels, and the
//! Neural Engine allows only so many compiles per process. An update only marks the kernels
//! stale; they are recompiled when the next update is about to run them. If that recompile
//! would not fit the budget, [`Trainer::step`] returns [`StepOutcome::RestartNeeded`] without
//! touching anything; the caller writes a checkpoint and continues in a fresh process (the CLI
//! re-executes itself), whose model build compiles the new weights. So a process needs room for
//! one build, not two, and does at least one update — a restart cannot loop.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ane_runtime::Device;
use rayon::prelude::*;

use crate::checkpoint::{self, Checkpoint, CheckpointError, CorpusInfo, Header, TrainSettings};
use crate::data::{DataError, TokenData, WindowSampler};
use crate::kernels::WeightMode;
use crate::llama::{Model, ModelError, ModelOptions};
use crate::loss_scale::{Backoff, LossScaler};
use crate::optim::AdamW;
use crate::tokenizer::TextTokenizer;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The data does not fit the model.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A setting is out of range.
    #[error("invalid training setting: {0}")]
    Settings(String),
    /// A checkpoint does not belong to this run.
    #[error("{0}")]
    Mismatch(String),
    /// The gradient was not finite several updates in a row at the lowest loss scale (1).
    #[error(
        "the gradient was not finite for {0} updates in a row at loss scale 1 (loss {1}); \
         lower the learning rate or resume from an earlier checkpoint"
    )]
    Diverged(u32, f32),
}

type Result<T> = std::result::Result<T, TrainError>;

/// Updates in a row with a non-finite gradient at the loss scale's floor (1; every update on
/// an fp32 device) before training stops.
pub const MAX_SKIPPED_IN_A_ROW: u32 = 3;

/// Where the time of a run went, summed over updates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Updates done in this process.
    pub updates: u64,
    /// Updates skipped because the gradient was not finite.
    pub skipped: u64,
    /// Windows of `S + 1` tokens trained on.
    pub windows: u64,
    /// Tokens predicted (`S` per window).
    pub tokens: u64,
    /// Wall time inside [`Trainer::step`].
    pub wall: Duration,
    /// Device kernel evaluations.
    pub device: Duration,
    /// Moving data into and out of device surfaces.
    pub traffic: Duration,
    /// Host ops (norms, RoPE, GQA, loss, dW GEMMs).
    pub host: Duration,
    /// AdamW (norm, clipping, update).
    pub optimizer: Duration,
    /// Handing new weights to the device (restaging, or recompiling in Baked mode).
    pub weight_update: Duration,
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Updates done, this one included.
    pub step: u64,
    /// Mean loss of the update's windows (before the update).
    pub loss: f32,
    /// Learning rate used.
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Whether the update was skipped (non-finite gradient or loss; parameters and AdamW
    /// state unchanged; on fp16 devices the loss scale was halved).
    pub skipped: bool,
    /// Loss scale the update's gradient was computed at (1 on fp32 devices).
    pub loss_scale: f32,
    /// Wall time of the update.
    pub elapsed: Duration,
}

/// What [`Trainer::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// One update was done.
    Updated(StepReport),
    /// Every update of the run is done.
    Finished,
    /// The next update's compiles do not fit this process's budget: checkpoint and restart.
    RestartNeeded {
        /// Compiles the update needs.
        needed: usize,
        /// Compiles left in this process.
        remaining: usize,
    },
}

/// A model being trained; see the module docs.
#[derive(Debug)]
pub struct Trainer {
    model: Model,
    opt: AdamW,
    sampler: WindowSampler,
    settings: TrainSettings,
    corpus: CorpusInfo,
    tokenizer: TextTokenizer,
    step: u64,
    skipped_in_a_row: u32,
    scaler: LossScaler,
    checked_data: Option<(usize, usize)>,
    totals: Totals,
    /// The update's (mean) gradient.
    grads: Vec<f32>,
    /// `grads` may hold something other than zeros (an accumulation started and the
    /// optimizer pass, which clears it, did not run).
    grads_dirty: bool,
    /// The token windows of one micro-step, side by side.
    windows: Vec<u32>,
}

impl Trainer {
    /// Starts a run of `settings` on `model` (its current parameters are the starting point).
    ///
    /// Errors: settings out of range; a compile budget that cannot fit one update even now.
    pub fn new(model: Model, settings: TrainSettings, corpus: CorpusInfo) -> Result<Trainer> {
        let opt = AdamW::new(settings.adamw, model.param_table());
        let sampler = WindowSampler::new(settings.seed);
        Trainer::assemble(model, opt, sampler, settings, corpus, 0)
    }

    /// Continues the run saved in `ckpt` on `device` in weight mode `mode`. The corpus must be
    /// the one the run was started on.
    pub fn resume(
        ckpt: Checkpoint,
        device: Arc<dyn Device>,
        mode: WeightMode,
        corpus: &CorpusInfo,
    ) -> Result<Trainer> {
        let h = ckpt.header;
        if h.corpus.sha256 != corpus.sha256 {
            return Err(TrainError::Mismatch(format!(
                "the checkpoint was trained on {} ({} bytes, sha256 {}), not on {} ({} bytes, \
                 sha256 {}); resume with the same corpus",
                h.corpus.name,
                h.corpus.bytes,
                h.corpus.sha256,
                corpus.name,
                corpus.bytes,
                corpus.sha256
            )));
        }
        let options = ModelOptions {
            batch: h.settings.batch as usize,
            ..ModelOptions::default()
        };
        let model = Model::with_options(h.model, device, mode, ckpt.params, options)?;
        let opt = AdamW::restore(
            h.settings.adamw,
            model.param_table(),
            ckpt.m,
            ckpt.v,
            h.adam_t,
        )
        .ok_or_else(|| TrainError::Mismatch("optimizer moments do not match the model".into()))?;
        let sampler = WindowSampler::from_state(h.sampler_state)
            .ok_or_else(|| TrainError::Mismatch("invalid sampler state".into()))?;
        let mut t = Trainer::assemble(model, opt, sampler, h.settings, h.corpus, h.step)?;
        t.skipped_in_a_row = h.skipped_in_a_row;
        if t.model.is_fp16() {
            t.scaler =
                LossScaler::restore(h.loss_scale, h.loss_scale_clean_run, h.loss_scale_interval)
                    .map_err(|e| TrainError::Mismatch(format!("checkpoint loss scaler: {e}")))?;
            t.model.set_loss_scale(t.scaler.scale())?;
        }
        t.tokenizer = ckpt.tokenizer;
        Ok(t)
    }

    fn assemble(
        model: Model,
        opt: AdamW,
        sampler: WindowSampler,
        settings: TrainSettings,
        corpus: CorpusInfo,
        step: u64,
    ) -> Result<Trainer> {
        if model.batch() != settings.batch as usize {
            return Err(TrainError::Settings(format!(
                "the model runs {} windows per pass, the settings ask for {}",
                model.batch(),
                settings.batch
            )));
        }
        if settings.accum == 0 {
            return Err(TrainError::Settings(
                "accumulation must be at least 1".into(),
            ));
        }
        settings.schedule.validate().map_err(TrainError::Settings)?;
        settings.adamw.validate().map_err(TrainError::Settings)?;
        let mut model = model;
        let scaler = if model.is_fp16() {
            LossScaler::dynamic()
        } else {
            LossScaler::fixed_one()
        };
        model.set_loss_scale(scaler.scale())?;
        Ok(Trainer {
            model,
            opt,
            sampler,
            settings,
            corpus,
            tokenizer: TextTokenizer::Bytes,
            step,
            skipped_in_a_row: 0,
            scaler,
            checked_data: None,
            totals: Totals::default(),
            grads: Vec::new(),
            grads_dirty: false,
            windows: Vec::new(),
        })
    }

    /// Does the next update, or says why not (see [`StepOutcome`]).
    pub fn step(&mut self, data: &TokenData) -> Result<StepOutcome> {
        if self.step >= self.settings.steps {
            return Ok(StepOutcome::Finished);
        }
        if let Some((needed, remaining)) = budget_shortfall(&self.model) {
            return Ok(StepOutcome::RestartNeeded { needed, remaining });
        }
        let (vocab, seq) = (self.model.config().vocab_size, self.model.config().seq_len);
        if self.checked_data != Some((data.train.len(), data.eval.len())) {
            data.check(vocab, seq)?;
            self.checked_data = Some((data.train.len(), data.eval.len()));
        }
        let start = Instant::now();
        // Baked: the kernels of the last update's weights are compiled now, when they are
        // about to run (never for an update followed by a restart).
        let t = Instant::now();
        self.model.recompile_if_stale()?;
        self.totals.weight_update += t.elapsed();
        let accum = self.settings.accum;
        let n = self.model.params().len();
        // The buffer lives across updates: a fresh 4-bytes-per-parameter vector every update
        // costs page faults and TLB shootdowns comparable to the optimizer itself. Windows
        // add their (loss-scaled) gradients into it; the optimizer pass divides by the loss
        // scale and the window count.
        let batch = self.settings.batch as usize;
        let Trainer {
            model,
            sampler,
            grads,
            grads_dirty,
            windows,
            totals,
            ..
        } = self;
        grads.resize(n, 0.0);
        if *grads_dirty {
            grads.par_iter_mut().for_each(|g| *g = 0.0);
        }
        *grads_dirty = true;
        let mut loss_sum = 0.0f64;
        for _ in 0..accum {
            // One micro-step: `batch` windows side by side in one pass.
            windows.clear();
            for _ in 0..batch {
                windows.extend_from_slice(sampler.next(&data.train, seq)?);
            }
            let loss = model.accumulate_grads(windows, grads)?;
            let t = model.timings();
            totals.device += t.device;
            totals.traffic += t.traffic;
            totals.host += t.host;
            loss_sum += f64::from(loss);
        }
        let loss_scale = model.loss_scale();
        let grad_scale = model.grad_scale() / accum as f32;
        let loss = (loss_sum / f64::from(accum)) as f32;
        let lr = self.settings.schedule.at(self.step);
        let t = Instant::now();
        let raw_norm = crate::optim::global_norm(&self.grads);
        let norm = raw_norm * grad_scale;
        let skipped = !norm.is_finite() || !loss.is_finite();
        let mut grad_norm = norm;
        let mut optimizer = t.elapsed();
        if skipped {
            self.totals.skipped += 1;
            if self.scaler.on_overflow() == Backoff::AtFloor {
                self.skipped_in_a_row += 1;
            }
            self.model.set_loss_scale(self.scaler.scale())?;
            if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW {
                return Err(TrainError::Diverged(self.skipped_in_a_row, loss));
            }
        } else {
            self.skipped_in_a_row = 0;
            let Trainer {
                model, opt, grads, ..
            } = self;
            model.update_params(|p| {
                let t = Instant::now();
                grad_norm = opt
                    .update_scaled_and_clear(p, grads, lr, raw_norm, grad_scale)
                    .grad_norm;
                optimizer += t.elapsed();
            })?;
            self.grads_dirty = false;
            self.scaler.on_clean();
            self.model.set_loss_scale(self.scaler.scale())?;
        }
        self.totals.optimizer += optimizer;
        self.totals.weight_update += t.elapsed().saturating_sub(optimizer);
        self.step += 1;
        let elapsed = start.elapsed();
        self.totals.updates += 1;
        let windows = u64::from(accum) * u64::from(self.settings.batch);
        self.totals.windows += windows;
        self.totals.tokens += windows * seq as u64;
        self.totals.wall += elapsed;
        Ok(StepOutcome::Updated(StepReport {
            step: self.step,
            loss,
            lr,
            grad_norm,
            skipped,
            loss_scale,
            elapsed,
        }))
    }

    /// Mean loss over up to `windows` fixed held-out windows; `None` without held-out data.
    pub fn eval_loss(&mut self, data: &TokenData, windows: usize) -> Result<Option<f32>> {
        let seq = self.model.config().seq_len;
        let ws = data.eval_windows(seq, windows);
        if ws.is_empty() {
            return Ok(None);
        }
        let mut sum = 0.0f64;
        for w in &ws {
            sum += f64::from(self.model.loss(w)?);
        }
        Ok(Some((sum / ws.len() as f64) as f32))
    }

    /// Writes the checkpoint of the run as it stands (atomically; see [`checkpoint::write`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = self.header();
        let (p, m, v) = (self.model.params(), &self.opt.m, &self.opt.v);
        Ok(checkpoint::write(path, &header, p, m, v, &self.tokenizer)?)
    }

    /// The run with `tokenizer` as the tokenizer its checkpoints carry (default: bytes).
    pub fn with_tokenizer(mut self, tokenizer: TextTokenizer) -> Trainer {
        self.tokenizer = tokenizer;
        self
    }

    /// The tokenizer the model is trained with.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The run with AdamW moments `m`, `v` and step count `t` taken over (e.g. from a
    /// maderix/ANE checkpoint), so the optimizer continues where that run stopped.
    pub fn with_adam_state(mut self, m: Vec<f32>, v: Vec<f32>, t: u64) -> Result<Trainer> {
        self.opt = AdamW::restore(self.settings.adamw, self.model.param_table(), m, v, t)
            .ok_or_else(|| {
                TrainError::Mismatch("optimizer moments do not match the model".into())
            })?;
        Ok(self)
    }

    /// The checkpoint header of the run as it stands.
    pub fn header(&self) -> Header {
        Header {
            model: self.model.config().clone(),
            n_params: self.model.params().len() as u64,
            step: self.step,
            adam_t: self.opt.t,
            sampler_state: self.sampler.state(),
            settings: self.settings,
            corpus: self.corpus.clone(),
            skipped_in_a_row: self.skipped_in_a_row,
            loss_scale: self.scaler.scale(),
            loss_scale_clean_run: self.scaler.clean_run(),
            loss_scale_interval: self.scaler.interval(),
            mode: self.model.mode().name().to_string(),
            device: self.model.device().capabilities().kind.name().to_string(),
            tokenizer_bytes: match &self.tokenizer {
                TextTokenizer::Bytes => 0,
                TextTokenizer::Llama2c(t) => t.to_bytes().len() as u64,
            },
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, e.g. to sample from it.
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// The loss scaler (fixed at 1 on fp32 devices).
    pub fn loss_scaler(&self) -> LossScaler {
        self.scaler
    }

    /// The run with the loss scale doubling after `interval` clean updates (at least 1)
    /// instead of [`crate::loss_scale::GROWTH_INTERVAL`]; kept in its checkpoints.
    pub fn with_loss_scale_interval(mut self, interval: u32) -> Trainer {
        self.scaler = self.scaler.with_interval(interval);
        self
    }

    /// The run continuing at loss scale `scale` (fp16 devices: a power of two in
    /// `[loss_scale::MIN, loss_scale::MAX]`; fp32: only 1), its clean-update count restarted.
    pub fn with_loss_scale(mut self, scale: f32) -> Result<Trainer> {
        if self.scaler.is_dynamic() {
            self.scaler = LossScaler::restore(scale, 0, self.scaler.interval())
                .map_err(TrainError::Settings)?;
        }
        self.model.set_loss_scale(scale)?;
        Ok(self)
    }

    /// The optimizer state.
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// Updates done in the whole run (across restarts).
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The run's settings.
    pub fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// Where this process's time went.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

/// `(needed, remaining)` when the compiles the next evaluation of `model` needs (stale Baked
/// kernels) do not fit what is left of its device's compile budget.
fn budget_shortfall(model: &Model) -> Option<(usize, usize)> {
    let needed = model.pending_compiles();
    let remaining = model.device().compiles_remaining()?;
    (needed > remaining).then_some((needed, remaining))
}
