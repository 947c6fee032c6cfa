//! Host GEMMs (classifier, weight gradients): a checked, slice-based `matmul`, and
//! [`overlap_dw`] to run weight-gradient GEMMs on the rayon pool while other work proceeds.
//!
//! Every product runs on the one GEMM engine the CPU executor's kernels use
//! ([`ane_runtime::cpu::gemm`]).

use super::{check_len, HostError};

pub use ane_runtime::cpu::gemm::Gemm;

/// Checks the slice lengths `c`, `a`, `b` against the dims of `g`.
pub fn check_gemm(g: &Gemm, c: usize, a: usize, b: usize) -> Result<(), HostError> {
    check_len("c", c, &[g.m, g.n])?;
    check_len("a", a, &[g.m, g.k])?;
    check_len("b", b, &[g.k, g.n])
}

/// `C (+)= op(A)·op(B)` as described by `g` (see [`Gemm`]), on the one GEMM engine
/// ([`ane_runtime::cpu::gemm::matmul`]: the executor's packed SGEMM with per-thread packing
/// scratch, or Accelerate on macOS).
///
/// - out: `c [m, n]` (overwritten, or accumulated with [`Gemm::accumulating`]);
/// - in: `a [m, k]` or `[k, m]`, `b [k, n]` or `[n, k]`; a length that does not match the
///   dims is a [`HostError::Len`].
pub fn matmul(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) -> Result<(), HostError> {
    check_gemm(&g, c.len(), a.len(), b.len())?;
    ane_runtime::cpu::gemm::matmul(c, a, b, g).map_err(|_| HostError::Overflow { what: "c" })
}

/// One weight-gradient product for [`overlap_dw`]: `c (+)= op(a)·op(b)` as `gemm` says.
#[derive(Debug)]
pub struct DwGemm<'a> {
    /// The output `[m, n]` (usually a weight gradient, with [`Gemm::accumulating`]).
    pub c: &'a mut [f32],
    /// Left operand.
    pub a: &'a [f32],
    /// Right operand.
    pub b: &'a [f32],
    /// Shape and flags.
    pub gemm: Gemm,
}

/// Runs the weight-gradient GEMMs `jobs` (in order) on the rayon pool while `work` runs
/// beside them (`rayon::join`), and returns what `work` returns once both are done — the
/// upstream "async dW on a queue, awaited before the next use" with borrows the compiler
/// checks instead of copied buffers.
///
/// Every job's dims are checked before anything runs: on a [`HostError`] neither the jobs
/// nor `work` have run.
pub fn overlap_dw<R: Send, const N: usize>(
    jobs: [DwGemm<'_>; N],
    work: impl FnOnce() -> R + Send,
) -> Result<R, HostError> {
    for job in &jobs {
        check_gemm(&job.gemm, job.c.len(), job.a.len(), job.b.len())?;
    }
    let (done, out) = rayon::join(
        move || {
            jobs.into_iter()
                .try_for_each(|job| matmul(job.c, job.a, job.b, job.gemm))
        },
        work,
    );
    done?;
    Ok(out)
}
