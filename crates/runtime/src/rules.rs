//! The Neural Engine's rules (`ane-pitfalls.md` §A), checked in one place.
//!
//! Both `ane-sim` and the real `ane` device call these checks before anything runs, so a broken
//! rule gives the same error on either device. Program rules are checked at compile time,
//! surface rules when a Binding is made. Each error names the rule, the symptom the hardware
//! would show, and what to change. Rule 4 (alphabetical binding) is not an error: it is how
//! [`crate::Kernel::bind_slots`] maps slots on these devices.

use ane_mil::{Arg, DType, Op, Program, TensorType};

use crate::error::{Error, Result};
use crate::surface::Surface;

/// Smallest IOSurface allocation an evaluation accepts (rule 1), bytes.
pub const MIN_SURFACE_BYTES: usize = 49_152;

/// Rule 5: the spatial (last) dim of every input and output is a multiple of this...
pub const SPATIAL_MULTIPLE: usize = 16;

/// ...and at least this.
pub const MIN_SPATIAL: usize = 32;

/// The smallest spatial width `>= width` that rule 5 allows: generators declare an input this
/// wide, fill the first `width` columns and slice them off inside the program.
pub fn padded_spatial_width(width: usize) -> usize {
    width.max(MIN_SPATIAL).next_multiple_of(SPATIAL_MULTIPLE)
}
/// Largest dimension of any tensor (rule 10).
pub const MAX_DIM: usize = 65_536;
/// Conv input channels from which the compiler rejects a conv (rule 10).
pub const MAX_CONV_INPUT_CHANNELS: usize = 32_000;

/// One rule of `ane-pitfalls.md` §A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AneRule {
    /// 1: every surface of a request is at least 48 KiB.
    MinSurfaceSize,
    /// 2: all input surfaces of a request have one allocation size.
    EqualInputSizes,
    /// 3: all output surfaces of a request have one allocation size.
    EqualOutputSizes,
    /// 4: multiple inputs/outputs bind in alphabetical order of their names.
    AlphabeticalBinding,
    /// 5: the spatial (last) dim of an input or output is a multiple of 16 and at least 32.
    SpatialWidth,
    /// 6: SDPA's `attn_mask` is ignored.
    SdpaMaskIgnored,
    /// 7: the op (or cast target) is not supported.
    UnsupportedOp,
    /// 8: rsqrt and log need an `epsilon`.
    EpsilonRequired,
    /// 9: function inputs are fp16, fp32 or bool.
    InputDType,
    /// 10: no dim above 65,536; no conv with 32,000+ input channels.
    DimLimit,
    /// 11: about 119 compiles per process.
    CompileBudget,
}

impl AneRule {
    /// The rule's number in `ane-pitfalls.md` §A.
    pub fn number(self) -> u8 {
        match self {
            AneRule::MinSurfaceSize => 1,
            AneRule::EqualInputSizes => 2,
            AneRule::EqualOutputSizes => 3,
            AneRule::AlphabeticalBinding => 4,
            AneRule::SpatialWidth => 5,
            AneRule::SdpaMaskIgnored => 6,
            AneRule::UnsupportedOp => 7,
            AneRule::EpsilonRequired => 8,
            AneRule::InputDType => 9,
            AneRule::DimLimit => 10,
            AneRule::CompileBudget => 11,
        }
    }

    /// What the hardware does when the rule is broken.
    pub fn symptom(self) -> &'static str {
        match self {
            AneRule::MinSurfaceSize | AneRule::EqualInputSizes | AneRule::EqualOutputSizes => {
                "eval fails with status 0x1d"
            }
            AneRule::AlphabeticalBinding => "inputs or outputs silently swapped",
            AneRule::SpatialWidth => "silently corrupted results",
            AneRule::SdpaMaskIgnored => "attention silently non-causal",
            AneRule::UnsupportedOp | AneRule::EpsilonRequired | AneRule::DimLimit => {
                "compile fails (ANECCompile() FAILED)"
            }
            AneRule::InputDType => "the program is rejected",
            AneRule::CompileBudget => "compiles fail or the process becomes unstable",
        }
    }
}

fn broken(rule: AneRule, detail: String, fix: &str) -> Error {
    Error::Rule {
        rule,
        detail,
        fix: fix.into(),
    }
}

/// Checks the program rules (5–10) on `program`'s `main` function.
pub fn check_program(program: &Program) -> Result<()> {
    let f = program.main().ok_or(Error::NoMain)?;
    for p in &f.params {
        if !matches!(p.ty.dtype, DType::Fp16 | DType::Fp32 | DType::Bool) {
            return Err(broken(
                AneRule::InputDType,
                format!("input `{}` is {}", p.name, p.ty),
                "pass fp16 (or fp32/bool) inputs and cast inside the program",
            ));
        }
        check_io_shape("input", &p.name, &p.ty)?;
    }
    for (r, ty) in f.returns.iter().zip(f.return_types()) {
        if let Some(ty) = ty {
            check_io_shape("output", r, ty)?;
        }
    }
    for s in &f.body {
        check_dims(&s.output, &s.ty)?;
        if let Some(lit) = s.attr("val") {
            check_dims(&s.output, lit.ty())?;
        }
        match s.op {
            Op::ScaledDotProductAttention if s.arg("attn_mask").is_some() => {
                return Err(broken(
                    AneRule::SdpaMaskIgnored,
                    format!(
                        "`{}` passes attn_mask to scaled_dot_product_attention",
                        s.output
                    ),
                    "compute scores with matmul, add the mask explicitly, then softmax",
                ))
            }
            Op::Rsqrt | Op::Log if s.arg("epsilon").is_none() => {
                return Err(broken(
                    AneRule::EpsilonRequired,
                    format!("`{}` = {} has no epsilon", s.output, s.op),
                    "give an epsilon, or use pow(x, -0.5) after a reduction",
                ))
            }
            Op::Cast if !matches!(s.ty.dtype, DType::Fp16 | DType::Fp32) => {
                return Err(broken(
                    AneRule::UnsupportedOp,
                    format!("`{}` casts to {}", s.output, s.ty.dtype),
                    "keep tensors in fp16/fp32; do integer work on the host",
                ))
            }
            Op::Conv => {
                if let Some(Arg::Var(x)) = s.arg("x") {
                    let ic = f
                        .type_of(x)
                        .and_then(|t| t.shape.get(1).copied())
                        .unwrap_or(0);
                    if ic >= MAX_CONV_INPUT_CHANNELS {
                        return Err(broken(
                            AneRule::DimLimit,
                            format!("conv `{}` has {ic} input channels", s.output),
                            "split the input channels into chunks and add the partial results",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_dims(name: &str, ty: &TensorType) -> Result<()> {
    if let Some(d) = ty.shape.iter().find(|&&d| d > MAX_DIM) {
        return Err(broken(
            AneRule::DimLimit,
            format!("`{name}` {ty} has a dim of {d}"),
            "chunk the dimension into pieces of at most 65,536 (e.g. split the vocab head)",
        ));
    }
    Ok(())
}

fn check_io_shape(what: &str, name: &str, ty: &TensorType) -> Result<()> {
    check_dims(name, ty)?;
    if let Some(&w) = ty.shape.last() {
        if padded_spatial_width(w) != w {
            return Err(broken(
                AneRule::SpatialWidth,
                format!("{what} `{name}` {ty} has spatial width {w}"),
                "make the last dim a multiple of 16 and at least 32 (pad the sequence)",
            ));
        }
    }
    Ok(())
}

/// Checks the surface rules (1–3) on a request's surfaces.
pub fn check_binding(inputs: &[Surface], outputs: &[Surface]) -> Result<()> {
    for s in inputs.iter().chain(outputs) {
        if s.alloc_bytes() < MIN_SURFACE_BYTES {
            return Err(broken(
                AneRule::MinSurfaceSize,
                format!(
                    "a {:?} {} surface has {} bytes (< {MIN_SURFACE_BYTES})",
                    s.shape(),
                    s.dtype(),
                    s.alloc_bytes()
                ),
                "allocate it with Device::surface (which pads to 48 KiB) or a larger alloc size",
            ));
        }
    }
    for (rule, set, what) in [
        (AneRule::EqualInputSizes, inputs, "input"),
        (AneRule::EqualOutputSizes, outputs, "output"),
    ] {
        if let Some(first) = set.first() {
            if let Some(other) = set.iter().find(|s| s.alloc_bytes() != first.alloc_bytes()) {
                return Err(broken(
                    rule,
                    format!(
                        "{what} surfaces have different allocation sizes ({} and {} bytes)",
                        first.alloc_bytes(),
                        other.alloc_bytes()
                    ),
                    "allocate every surface of the request with the largest size (Device::surface_with_alloc)",
                ));
            }
        }
    }
    Ok(())
}
