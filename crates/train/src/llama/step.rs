//! One pass of the model: the windows laid out as columns, the trunk forward, the fused
//! classifier loss and (given a gradient buffer) the backward through every layer, timed.

use std::time::{Duration, Instant};

use super::backward;
use super::forward::Trunk;
use super::runner::LayerKernels;
use super::workspace::Workspace;
use super::{Model, ModelError, Result, StepTimings};
use crate::host::{self, LossGrads};

/// Host time of one pass spent in the two largest host ops.
#[derive(Debug, Clone, Copy, Default)]
struct HostParts {
    /// The fused attention (cpu kernel set), forward and backward.
    attention: Duration,
    /// The fused classifier and cross-entropy, with its backward when gradients are taken.
    classifier: Duration,
}

impl Model {
    pub(super) fn timed(&mut self, tokens: &[u32], grads: Option<&mut [f32]>) -> Result<f32> {
        self.recompile_if_stale()?;
        let t = Instant::now();
        // The whole pass runs on one rayon worker: its parallel work is pushed onto that
        // worker's own deque instead of being injected into the pool from outside, which
        // allocates a queue block every 63 injections.
        let out = rayon::scope(|_| self.run(tokens, grads));
        let total = t.elapsed();
        let mut timings = StepTimings {
            total,
            ..StepTimings::default()
        };
        for set in &mut self.layers {
            for (kind, r) in set.iter_mut() {
                let (d, tr) = r.take_times();
                timings.device += d;
                timings.per_kernel[kind.index()] += d;
                timings.traffic += tr;
            }
        }
        let parts = out.as_ref().map_or(HostParts::default(), |&(_, p)| p);
        timings.host = total.saturating_sub(timings.device + timings.traffic);
        timings.attention = parts.attention;
        timings.classifier = parts.classifier;
        self.timings = timings;
        out.map(|(loss, _)| loss)
    }

    /// Forward (and, given a gradient buffer, backward, accumulating into it). Returns the
    /// loss and the time spent in host attention and in the classifier.
    fn run(&mut self, tokens: &[u32], grads: Option<&mut [f32]>) -> Result<(f32, HostParts)> {
        let Model {
            cfg,
            set,
            ranges,
            params,
            rope,
            layers,
            ws,
            loss_scale,
            compaction,
            batch,
            ..
        } = self;
        let (s, b, dloss) = (cfg.seq_len, *batch, *loss_scale);
        let cols = s * b;
        let one = tokens.len() == s + 1;
        if tokens.len() != b * (s + 1) && !(one && grads.is_none()) {
            let got = tokens.len();
            return Err(ModelError::Shape(if b == 1 {
                format!("a window holds seq_len + 1 = {} tokens, got {got}", s + 1)
            } else {
                format!(
                    "a pass takes {b} windows of seq_len + 1 = {} tokens ({} in all; one \
                     window for a loss alone), got {got}",
                    s + 1,
                    b * (s + 1)
                )
            }));
        }
        // Window k's inputs and targets go to columns k·S..(k+1)·S; one window given for a
        // loss fills every window of the pass (the mean is that window's loss).
        for k in 0..b {
            let w = if one {
                tokens
            } else {
                &tokens[k * (s + 1)..(k + 1) * (s + 1)]
            };
            ws.inputs[k * s..(k + 1) * s].copy_from_slice(&w[..s]);
            ws.targets[k * s..(k + 1) * s].copy_from_slice(&w[1..]);
        }
        let trunk = Trunk {
            cfg,
            set: *set,
            cols,
            ranges,
            params,
            rope,
        };
        let inputs = std::mem::take(&mut ws.inputs);
        let targets = std::mem::take(&mut ws.targets);
        let out = Model::pass(
            &trunk,
            layers,
            ws,
            (&inputs, &targets),
            dloss,
            compaction,
            grads,
        );
        ws.inputs = inputs;
        ws.targets = targets;
        out
    }

    /// The forward (and backward) of one pass over `inputs`/`targets` (`B·S` ids each).
    #[allow(clippy::too_many_arguments)]
    fn pass(
        trunk: &Trunk<'_>,
        layers: &mut [LayerKernels],
        ws: &mut Workspace,
        (inputs, targets): (&[u32], &[u32]),
        dloss: f32,
        compaction: &Option<host::VocabCompaction>,
        grads: Option<&mut [f32]>,
    ) -> Result<(f32, HostParts)> {
        let Trunk {
            cfg,
            ranges,
            params,
            cols,
            ..
        } = *trunk;
        let (d, v) = (cfg.dim, cfg.vocab_size);
        let mut attention = trunk.run(layers, ws, inputs)?;
        let Workspace {
            saved,
            x_last,
            xf,
            dx,
            dx_next,
            dxf,
            grads: g,
            attention: attn_ws,
            loss: loss_ws,
            head_rows,
            dhead_rows,
            mapped,
            ..
        } = ws;
        let head = &params[ranges.head.clone()];
        let t_cls = Instant::now();
        let Some(grads) = grads else {
            let loss = match compaction.as_ref() {
                None => host::classifier_loss(None, xf, head, targets, v, d, dloss, loss_ws)?,
                Some(comp) => {
                    comp.gather_rows(head_rows, head, d)?;
                    comp.map_targets(mapped, targets)?;
                    let cv = comp.compact_vocab();
                    host::classifier_loss(None, xf, head_rows, mapped, cv, d, dloss, loss_ws)?
                }
            };
            let classifier = t_cls.elapsed();
            return Ok((
                loss,
                HostParts {
                    attention,
                    classifier,
                },
            ));
        };
        dxf.fill(0.0);
        let loss = match compaction.as_ref() {
            None => {
                let lg = LossGrads {
                    dx: dxf,
                    dweight: &mut grads[ranges.head.clone()],
                };
                host::classifier_loss(Some(lg), xf, head, targets, v, d, dloss, loss_ws)?
            }
            Some(comp) => {
                comp.gather_rows(head_rows, head, d)?;
                comp.map_targets(mapped, targets)?;
                dhead_rows.fill(0.0);
                let lg = LossGrads {
                    dx: dxf,
                    dweight: dhead_rows,
                };
                let cv = comp.compact_vocab();
                let loss =
                    host::classifier_loss(Some(lg), xf, head_rows, mapped, cv, d, dloss, loss_ws)?;
                comp.scatter_add_rows(&mut grads[ranges.head.clone()], dhead_rows, d)?;
                loss
            }
        };
        let classifier = t_cls.elapsed();
        dx.fill(0.0);
        host::rmsnorm_backward(
            dx,
            &mut grads[ranges.final_norm.clone()],
            dxf,
            x_last,
            &params[ranges.final_norm.clone()],
            d,
            cols,
            cfg.norm_eps,
        )?;
        for l in (0..cfg.n_layers).rev() {
            attention += backward::layer_backward(
                trunk,
                &mut layers[l],
                l,
                &saved[l],
                (dx, dx_next),
                g,
                attn_ws,
                grads,
            )?;
            std::mem::swap(dx, dx_next);
        }
        host::embedding_backward(&mut grads[ranges.embed.clone()], inputs, dx, v, d)?;
        Ok((
            loss,
            HostParts {
                attention,
                classifier,
            },
        ))
    }
}
