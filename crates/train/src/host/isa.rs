//! Which vector instruction set the host kernels that dominate a step (the fused attention,
//! the loss's softmax rows) are run with: each has `#[target_feature]` copies for AVX-512 and
//! AVX2 + FMA, chosen here at run time, so the baseline build stays portable.

/// The widest vector ISA this CPU offers the host kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F (x86-64).
    Avx512,
    /// AVX2 and FMA (x86-64).
    Avx2,
    /// The build's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
}

/// The widest ISA of this CPU. [`Isa::Avx512`] and [`Isa::Avx2`] are returned only when the
/// CPU has those features, which is what calling their `#[target_feature]` copies requires.
pub(crate) fn widest() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}
