//! Device kernel generators: one MIL generator per kernel of the dynamic pipeline
//! (`reference/ane-upstream.md` §5.2), each emitting all three [`WeightMode`]s.
//!
//! Legend (llm.c style): `D` dim, `S` seq, `H` hidden, `NH` heads, `NKV` kv heads, `HD` head
//! dim, `QD = NH·HD`, `KVD = NKV·HD`, `G = NH/NKV` (GQA group size), `α` residual scale.
//! Activations are channel-first `[1, C, 1, S]` tensors (element `(c, s)` at `c·S + s`); a
//! matrix `W` is PyTorch `[out, in]` row-major. Heads are channel blocks: channel
//! `h·HD + d` is dimension `d` of head `h`.
//!
//! Each generator returns a [`KernelSpec`]: the Program, its BLOBFILE weight files, and where
//! every activation and weight block sits in the inputs and every result in the output, so the
//! host never guesses an offset. Every kernel has exactly one output, `out`, whose channel
//! blocks are listed in [`OutputSlot::parts`].
//!
//! Input layout by mode, for a kernel whose activation blocks are `a₀ … aₙ` (each `[C, S]`)
//! and whose weight blocks are `B₀ … Bₘ` (each `[C, colsᵢ]`):
//! - [`WeightMode::Baked`]: one input `x [1, C, 1, n·S] = [a₀ | … | aₙ]`; weights are
//!   BLOBFILE `conv` weights `[OUT, IN, 1, 1]` of the map applied (written at generation time).
//! - [`WeightMode::Packed`]: one input `x [1, C, 1, n·S + Σ colsᵢ] = [a₀ | … | aₙ | B₀ | … | Bₘ]`.
//! - [`WeightMode::Params`]: input `a_x [1, C, 1, n·S]` plus one parameter per weight block,
//!   `b_<block>`, `c_<block>`, … `[1, C, 1, colsᵢ]`; the letter prefixes make the names sort
//!   byte-wise in declaration order, which is the order the Neural Engine binds them in (rule 4).
//!
//! A weight block holds either `W` as stored (`[out, in]`, block name `wq`) or `Wᵀ`
//! (`[in, out]`, block name `wqt`), whichever has `C` rows; [`Block::content`] says which.
//! Weight-free kernels (`sdpaBwd1`, `sdpaBwd2`) take channel blocks of one input `x` and emit
//! the same program in every mode. Weight-free constants (causal mask, RoPE tables) are
//! BLOBFILE constants in every mode.

mod backward;
mod forward;
mod gen;
mod spec;

use std::ops::Range;

use ane_mil::DType;

pub use backward::{ffn_bwd_w13t, ffn_bwd_w2t, kv_bwd, q_bwd, sdpa_bwd1, sdpa_bwd2, wot_bwd};
pub use forward::{ffn_fused, qkv_fwd, sdpa_fwd, wo_fwd};
pub use gen::{causal_mask, rope_tables};
pub use spec::{Block, BlockContent, InputSlot, KernelSpec, OutputPart, OutputSlot};

/// Errors from the kernel generators and the slot helpers.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The dims are inconsistent or unusable.
    #[error("invalid kernel dims: {0}")]
    Dims(String),
    /// An option is out of range.
    #[error("invalid kernel option: {0}")]
    Option(String),
    /// `Baked` mode was asked for without weight values.
    #[error("kernel {kernel}: Baked mode needs the weight values (pass Some(&LayerWeights))")]
    MissingWeights {
        /// The kernel name.
        kernel: &'static str,
    },
    /// A weight slice or activation buffer has the wrong length.
    #[error("`{name}` has {got} values, expected {expected}")]
    Length {
        /// What was given.
        name: String,
        /// Its length.
        got: usize,
        /// The length the layout needs.
        expected: usize,
    },
    /// A block or output part name that the slot does not have.
    #[error("slot `{slot}` has no block `{name}`")]
    NoSuchBlock {
        /// The slot.
        slot: String,
        /// The name asked for.
        name: String,
    },
    /// The MIL builder rejected a statement (a generator bug or an extreme dim).
    #[error(transparent)]
    Mil(#[from] ane_mil::Error),
}

/// How weights reach a kernel (see the module docs for the exact input layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightMode {
    /// BLOBFILE constants; new weights need a recompile.
    Baked,
    /// Packed beside the activations along the spatial axis of the single input `x`.
    Packed,
    /// Separate function parameters, one per weight block.
    Params,
}

impl WeightMode {
    /// All modes.
    pub const ALL: [WeightMode; 3] = [WeightMode::Baked, WeightMode::Packed, WeightMode::Params];

    /// Lower-case name: `baked`, `packed`, `params`.
    pub fn name(self) -> &'static str {
        match self {
            WeightMode::Baked => "baked",
            WeightMode::Packed => "packed",
            WeightMode::Params => "params",
        }
    }

    /// The mode named `name` (as [`WeightMode::name`] spells it), or `None`.
    pub fn from_name(name: &str) -> Option<WeightMode> {
        WeightMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The dims a kernel is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelDims {
    /// Model dim `D`.
    pub dim: usize,
    /// `QD = n_heads · head_dim`.
    pub q_dim: usize,
    /// `KVD = n_kv_heads · head_dim`.
    pub kv_dim: usize,
    /// FFN hidden dim `H`.
    pub hidden: usize,
    /// Query heads `NH`.
    pub n_heads: usize,
    /// Key/value heads `NKV` (divides `NH`).
    pub n_kv_heads: usize,
    /// Head dim `HD` (even, for RoPE pairs).
    pub head_dim: usize,
    /// Columns of one pass: `B·S` for `B` windows of `S` positions side by side.
    pub seq: usize,
    /// Positions per window `S` (RoPE restarts at 0 every `window` columns); equals `seq`
    /// for one window. Kernels with attention inside (`sdpaFwd`, `sdpaBwd1`, `sdpaBwd2`)
    /// need one window per pass.
    pub window: usize,
}

impl KernelDims {
    /// Checks that the dims are positive, consistent (`QD = NH·HD`, `KVD = NKV·HD`, `NKV | NH`,
    /// even `HD`) and small enough for MIL's int32 shapes.
    pub fn validate(&self) -> Result<(), KernelError> {
        let all = [
            ("dim", self.dim),
            ("q_dim", self.q_dim),
            ("kv_dim", self.kv_dim),
            ("hidden", self.hidden),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("seq", self.seq),
            ("window", self.window),
        ];
        if let Some((name, _)) = all.iter().find(|(_, v)| *v == 0) {
            return Err(KernelError::Dims(format!("{name} is 0")));
        }
        if !self.seq.is_multiple_of(self.window) {
            return Err(KernelError::Dims(format!(
                "seq {} is not a whole number of windows of {}",
                self.seq, self.window
            )));
        }
        let limit = i32::MAX as usize / 4;
        if let Some((name, v)) = all.iter().find(|(_, v)| *v > limit) {
            return Err(KernelError::Dims(format!("{name} = {v} is too large")));
        }
        // Widest spatial extent any kernel uses, and the largest flattened blocks (saturating:
        // the dims alone are below `limit`, their products need not be).
        let (s, d) = (self.seq, self.dim);
        let widest = [
            s.saturating_mul(2)
                .saturating_add(self.hidden.saturating_mul(3)),
            s.saturating_add(self.q_dim)
                .saturating_add(self.kv_dim.saturating_mul(2)),
            s.saturating_mul(2).saturating_add(d.saturating_mul(2)),
            s.saturating_mul(self.head_dim),
            s.saturating_mul(self.n_heads).saturating_mul(2),
        ];
        if widest.iter().any(|&w| w > limit) {
            return Err(KernelError::Dims(
                "a packed width or flattened block overflows int32 shapes".into(),
            ));
        }
        if self.n_heads.checked_mul(self.head_dim) != Some(self.q_dim) {
            return Err(KernelError::Dims(format!(
                "q_dim {} != n_heads {} · head_dim {}",
                self.q_dim, self.n_heads, self.head_dim
            )));
        }
        if self.n_kv_heads.checked_mul(self.head_dim) != Some(self.kv_dim) {
            return Err(KernelError::Dims(format!(
                "kv_dim {} != n_kv_heads {} · head_dim {}",
                self.kv_dim, self.n_kv_heads, self.head_dim
            )));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(KernelError::Dims(format!(
                "n_kv_heads {} does not divide n_heads {}",
                self.n_kv_heads, self.n_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(KernelError::Dims(format!(
                "head_dim {} is odd (RoPE rotates pairs)",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// `G = NH / NKV`, query heads per KV head.
    pub fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// `(out, in)` of a weight matrix.
    pub fn matrix_shape(&self, m: Matrix) -> (usize, usize) {
        match m {
            Matrix::Wq => (self.q_dim, self.dim),
            Matrix::Wk | Matrix::Wv => (self.kv_dim, self.dim),
            Matrix::Wo => (self.dim, self.q_dim),
            Matrix::W1 | Matrix::W3 => (self.hidden, self.dim),
            Matrix::W2 => (self.dim, self.hidden),
        }
    }
}

/// The KV head that query head `h` attends with: `h / (NH / NKV)` (Hugging Face `repeat_kv`:
/// consecutive query heads share a KV head). Upstream's forward kernel tiled the whole KV block
/// instead, i.e. used `h mod NKV`, which disagreed with its own backward for `NKV < NH` (the GQA
/// defect of `ane-pitfalls.md` §B); this checks the dims and defers to the one mapping,
/// [`crate::model::kv_head_of`], that the host ops use too.
/// Returns `None` for inconsistent dims (`n_kv_heads` 0 or not dividing `n_heads`, or
/// `h >= n_heads`).
pub fn gqa_kv_head(h: usize, n_heads: usize, n_kv_heads: usize) -> Option<usize> {
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) || h >= n_heads {
        return None;
    }
    Some(crate::model::kv_head_of(h, n_heads, n_kv_heads))
}

/// Options shared by all generators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelOptions {
    /// Dtype of every input, output, constant and intermediate: `Fp16` for the Neural Engine
    /// and `ane-sim`, `Fp32` for exact runs on `cpu`.
    pub dtype: DType,
    /// Residual scale `α` used by `ffnFused` (`x_next = x2 + α·W2·gate`).
    pub alpha: f32,
    /// RoPE base θ (`angle(p, i) = p · θ^(−2i/HD)`).
    pub rope_theta: f32,
    /// Params mode only: every weight parameter holds its matrix exactly as the model stores
    /// it (`W [out, in]` row-major, parameter `[1, out, 1, in]`, no padding), so a host can
    /// hand the kernel its parameter buffer itself (zero-copy weights on the `cpu` device).
    /// Off for the Neural Engine, whose inputs have the activation's channel count and padded
    /// widths (rule 5).
    pub weights_as_stored: bool,
}

impl Default for KernelOptions {
    /// fp16, `α = 1`, `θ = 10000`, Neural Engine weight layout.
    fn default() -> Self {
        KernelOptions {
            dtype: DType::Fp16,
            alpha: 1.0,
            rope_theta: 10_000.0,
            weights_as_stored: false,
        }
    }
}

impl KernelOptions {
    fn validate(&self) -> Result<(), KernelError> {
        if !matches!(self.dtype, DType::Fp16 | DType::Fp32) {
            return Err(KernelError::Option(format!(
                "dtype {} (use fp16 or fp32)",
                self.dtype
            )));
        }
        if !self.alpha.is_finite() {
            return Err(KernelError::Option(format!("alpha {}", self.alpha)));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(KernelError::Option(format!(
                "rope_theta {} (must be > 0)",
                self.rope_theta
            )));
        }
        Ok(())
    }
}

/// A weight matrix of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Matrix {
    /// `Wq [QD, D]`.
    Wq,
    /// `Wk [KVD, D]`.
    Wk,
    /// `Wv [KVD, D]`.
    Wv,
    /// `Wo [D, QD]`.
    Wo,
    /// `W1 [H, D]` (gate projection).
    W1,
    /// `W2 [D, H]` (down projection).
    W2,
    /// `W3 [H, D]` (up projection).
    W3,
}

impl Matrix {
    /// Lower-case name: `wq`, `wk`, …
    pub fn name(self) -> &'static str {
        match self {
            Matrix::Wq => "wq",
            Matrix::Wk => "wk",
            Matrix::Wv => "wv",
            Matrix::Wo => "wo",
            Matrix::W1 => "w1",
            Matrix::W2 => "w2",
            Matrix::W3 => "w3",
        }
    }
}

/// One layer's weight values for [`WeightMode::Baked`], each PyTorch `[out, in]` row-major f32.
/// Only the matrices a kernel uses are read (and length-checked).
#[derive(Debug, Clone, Copy)]
pub struct LayerWeights<'a> {
    /// `Wq [QD, D]`.
    pub wq: &'a [f32],
    /// `Wk [KVD, D]`.
    pub wk: &'a [f32],
    /// `Wv [KVD, D]`.
    pub wv: &'a [f32],
    /// `Wo [D, QD]`.
    pub wo: &'a [f32],
    /// `W1 [H, D]`.
    pub w1: &'a [f32],
    /// `W2 [D, H]`.
    pub w2: &'a [f32],
    /// `W3 [H, D]`.
    pub w3: &'a [f32],
}

impl<'a> LayerWeights<'a> {
    /// The values of `m`.
    pub fn get(&self, m: Matrix) -> &'a [f32] {
        match m {
            Matrix::Wq => self.wq,
            Matrix::Wk => self.wk,
            Matrix::Wv => self.wv,
            Matrix::Wo => self.wo,
            Matrix::W1 => self.w1,
            Matrix::W2 => self.w2,
            Matrix::W3 => self.w3,
        }
    }
}

/// The kernels of the dynamic pipeline (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// See [`sdpa_fwd`].
    SdpaFwd,
    /// See [`wo_fwd`].
    WoFwd,
    /// See [`ffn_fused`].
    FfnFused,
    /// See [`ffn_bwd_w2t`].
    FfnBwdW2t,
    /// See [`ffn_bwd_w13t`].
    FfnBwdW13t,
    /// See [`wot_bwd`].
    WotBwd,
    /// See [`sdpa_bwd1`].
    SdpaBwd1,
    /// See [`sdpa_bwd2`].
    SdpaBwd2,
    /// See [`q_bwd`].
    QBwd,
    /// See [`kv_bwd`].
    KvBwd,
    /// See [`qkv_fwd`] (cpu kernel set only).
    QkvFwd,
}

impl KernelKind {
    /// All kernels: the Neural Engine set in pipeline order, then `qkvFwd`.
    pub const ALL: [KernelKind; 11] = [
        KernelKind::SdpaFwd,
        KernelKind::WoFwd,
        KernelKind::FfnFused,
        KernelKind::FfnBwdW2t,
        KernelKind::FfnBwdW13t,
        KernelKind::WotBwd,
        KernelKind::SdpaBwd1,
        KernelKind::SdpaBwd2,
        KernelKind::QBwd,
        KernelKind::KvBwd,
        KernelKind::QkvFwd,
    ];

    /// Position in [`KernelKind::ALL`] (for per-kind arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the kernel reads weights (all but `sdpaBwd1` and `sdpaBwd2`): in Baked mode
    /// such a kernel is compiled per layer.
    pub fn has_weights(self) -> bool {
        !matches!(self, KernelKind::SdpaBwd1 | KernelKind::SdpaBwd2)
    }

    /// Upstream's name: `sdpaFwd`, `woFwd`, …
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::SdpaFwd => "sdpaFwd",
            KernelKind::WoFwd => "woFwd",
            KernelKind::FfnFused => "ffnFused",
            KernelKind::FfnBwdW2t => "ffnBwdW2t",
            KernelKind::FfnBwdW13t => "ffnBwdW13t",
            KernelKind::WotBwd => "wotBwd",
            KernelKind::SdpaBwd1 => "sdpaBwd1",
            KernelKind::SdpaBwd2 => "sdpaBwd2",
            KernelKind::QBwd => "qBwd",
            KernelKind::KvBwd => "kvBwd",
            KernelKind::QkvFwd => "qkvFwd",
        }
    }

    /// Runs this kernel's generator.
    pub fn generate(
        self,
        dims: &KernelDims,
        opts: &KernelOptions,
        mode: WeightMode,
        weights: Option<&LayerWeights<'_>>,
    ) -> Result<KernelSpec, KernelError> {
        let attends = matches!(
            self,
            KernelKind::SdpaFwd | KernelKind::SdpaBwd1 | KernelKind::SdpaBwd2
        );
        if attends && dims.window != dims.seq {
            return Err(KernelError::Dims(format!(
                "{} attends over the whole pass: it needs one window per pass (window {} != \
                 seq {})",
                self.name(),
                dims.window,
                dims.seq
            )));
        }
        let g = match self {
            KernelKind::SdpaFwd => sdpa_fwd,
            KernelKind::WoFwd => wo_fwd,
            KernelKind::FfnFused => ffn_fused,
            KernelKind::FfnBwdW2t => ffn_bwd_w2t,
            KernelKind::FfnBwdW13t => ffn_bwd_w13t,
            KernelKind::WotBwd => wot_bwd,
            KernelKind::SdpaBwd1 => sdpa_bwd1,
            KernelKind::SdpaBwd2 => sdpa_bwd2,
            KernelKind::QBwd => q_bwd,
            KernelKind::KvBwd => kv_bwd,
            KernelKind::QkvFwd => qkv_fwd,
        };
        g(dims, opts, mode, weights)
    }
}

/// Which kernels run a model's layers: the two kernel sets of `DESIGN.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelSet {
    /// The Neural Engine set (`ane`, `ane-sim`): attention decomposed into `sdpaFwd`,
    /// `sdpaBwd1`, `sdpaBwd2` with an explicit mask and `[NH, S, S]` probabilities between
    /// them — what the hardware accepts.
    NeuralEngine,
    /// The cpu set: `qkvFwd` instead of `sdpaFwd`, and the attention itself fused on the host
    /// ([`crate::host::attention_forward`] / [`crate::host::attention_backward`]), never
    /// writing `[NH, S, S]`.
    Cpu,
}

impl KernelSet {
    /// The kernels of this set, in pipeline order.
    pub fn kinds(self) -> &'static [KernelKind] {
        match self {
            KernelSet::NeuralEngine => &KernelKind::ALL[..10],
            KernelSet::Cpu => &[
                KernelKind::QkvFwd,
                KernelKind::WoFwd,
                KernelKind::FfnFused,
                KernelKind::FfnBwdW2t,
                KernelKind::FfnBwdW13t,
                KernelKind::WotBwd,
                KernelKind::QBwd,
                KernelKind::KvBwd,
            ],
        }
    }

    /// The set a device runs: [`KernelSet::Cpu`] on the exact-fidelity CPU device,
    /// [`KernelSet::NeuralEngine`] on `ane-sim` and `ane`.
    pub fn for_device(caps: &ane_runtime::Capabilities) -> KernelSet {
        if caps.kind == ane_runtime::DeviceKind::Cpu {
            KernelSet::Cpu
        } else {
            KernelSet::NeuralEngine
        }
    }

    /// Lower-case name: `neural-engine` or `cpu`.
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::NeuralEngine => "neural-engine",
            KernelSet::Cpu => "cpu",
        }
    }
}

/// `start..start + len`.
fn span(start: usize, len: usize) -> Range<usize> {
    start..start + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> KernelDims {
        KernelDims {
            dim: 64,
            q_dim: 64,
            kv_dim: 32,
            hidden: 128,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            seq: 32,
            window: 32,
        }
    }

    #[test]
    fn gqa_mapping_is_hugging_face() {
        let heads: Vec<_> = (0..4).map(|h| gqa_kv_head(h, 4, 2).unwrap()).collect();
        assert_eq!(heads, vec![0, 0, 1, 1]);
        assert_eq!(gqa_kv_head(0, 4, 3), None);
        assert_eq!(gqa_kv_head(4, 4, 2), None);
        assert_eq!(gqa_kv_head(0, 4, 0), None);
    }

    #[test]
    fn bad_dims_are_errors_not_panics() {
        assert!(tiny().validate().is_ok());
        let bad = [
            KernelDims { seq: 0, ..tiny() },
            KernelDims {
                window: 24,
                ..tiny()
            },
            KernelDims {
                q_dim: 48,
                ..tiny()
            },
            KernelDims {
                n_kv_heads: 3,
                kv_dim: 48,
                ..tiny()
            },
            KernelDims {
                head_dim: 15,
                q_dim: 60,
                kv_dim: 30,
                ..tiny()
            },
            KernelDims {
                hidden: usize::MAX / 2,
                ..tiny()
            },
        ];
        for d in bad {
            for k in KernelKind::ALL {
                for m in WeightMode::ALL {
                    let r = k.generate(&d, &KernelOptions::default(), m, None);
                    assert!(matches!(r, Err(KernelError::Dims(_))), "{d:?} {k:?}");
                }
            }
        }
    }

    #[test]
    fn baked_without_weights_is_an_error() {
        let r = wo_fwd(&tiny(), &KernelOptions::default(), WeightMode::Baked, None);
        assert!(matches!(r, Err(KernelError::MissingWeights { .. })));
        let short = [0.0f32; 3];
        let w = LayerWeights {
            wq: &short,
            wk: &short,
            wv: &short,
            wo: &short,
            w1: &short,
            w2: &short,
            w3: &short,
        };
        let r = wo_fwd(
            &tiny(),
            &KernelOptions::default(),
            WeightMode::Baked,
            Some(&w),
        );
        assert!(matches!(r, Err(KernelError::Length { .. })));
    }

    #[test]
    fn bad_options_are_errors() {
        let opts = KernelOptions {
            rope_theta: 0.0,
            ..KernelOptions::default()
        };
        let r = sdpa_fwd(&tiny(), &opts, WeightMode::Packed, None);
        assert!(matches!(r, Err(KernelError::Option(_))));
        let opts = KernelOptions {
            dtype: DType::Int32,
            ..KernelOptions::default()
        };
        let r = sdpa_bwd2(&tiny(), &opts, WeightMode::Packed, None);
        assert!(matches!(r, Err(KernelError::Option(_))));
    }
}
