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

/// Defines `fn $name(args) -> ret` that runs `$body(args)` (an `#[inline(always)]` function)
/// compiled for the widest vector ISA this CPU has ([`widest`]): a `#[target_feature]` copy
/// for AVX-512, one for AVX2 + FMA, else the baseline build. Same code, same arithmetic in the
/// same order (Rust never contracts a multiply and an add into an FMA), only wider vectors.
macro_rules! widest_copies {
    (
        $(#[$doc:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;
    ) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            /// `$body` with AVX-512. Safety: the CPU must have AVX-512F, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            /// `$body` with AVX2. Safety: the CPU must have AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            match $crate::host::isa::widest() {
                // SAFETY: `widest` returns Avx512 only on a CPU with AVX-512F (and AVX2, FMA).
                #[cfg(target_arch = "x86_64")]
                $crate::host::isa::Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: `widest` returns Avx2 only on a CPU with AVX2 and FMA.
                #[cfg(target_arch = "x86_64")]
                $crate::host::isa::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => $body($($arg),*),
            }
        }
    };
}
pub(crate) use widest_copies;
