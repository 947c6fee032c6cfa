//! Host GEMMs (classifier, weight gradients): a checked, slice-based `matmul`, and
//! [`overlap_dw`] to run weight-gradient GEMMs on the rayon pool while other work proceeds.
//!
//! On macOS the product runs on Accelerate's `cblas_sgemm` (the AMX units) when it resolves;
//! everywhere else, and as the fallback, on the `gemm` crate across the rayon pool.

use ane_runtime::ane::accelerate;

use super::{check_len, HostError};

/// The shape and flags of one product `C[m×n] (+)= op(A)·op(B)`, all row-major:
/// `op(A)` is `[m, k]`, stored as `A [m, k]`, or as `A [k, m]` when `trans_a`;
/// `op(B)` is `[k, n]`, stored as `B [k, n]`, or as `B [n, k]` when `trans_b`;
/// `C [m, n]` is overwritten, or added to when `accumulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    /// Rows of `C` and of `op(A)`.
    pub m: usize,
    /// Columns of `C` and of `op(B)`.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// `A` is stored `[k, m]` (use `Aᵀ`).
    pub trans_a: bool,
    /// `B` is stored `[n, k]` (use `Bᵀ`).
    pub trans_b: bool,
    /// `C += op(A)·op(B)` instead of `C = op(A)·op(B)`.
    pub accumulate: bool,
}

impl Gemm {
    /// `C[m×n] = A[m×k]·B[k×n]`, no transposes, overwriting `C`.
    pub fn new(m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            accumulate: false,
        }
    }

    /// The same product with `A` stored transposed, `[k, m]`.
    pub fn a_transposed(self) -> Gemm {
        Gemm {
            trans_a: true,
            ..self
        }
    }

    /// The same product with `B` stored transposed, `[n, k]`.
    pub fn b_transposed(self) -> Gemm {
        Gemm {
            trans_b: true,
            ..self
        }
    }

    /// The same product added into `C`.
    pub fn accumulating(self) -> Gemm {
        Gemm {
            accumulate: true,
            ..self
        }
    }

    /// Checks the slice lengths against the dims.
    pub fn check(&self, c: usize, a: usize, b: usize) -> Result<(), HostError> {
        check_len("c", c, &[self.m, self.n])?;
        check_len("a", a, &[self.m, self.k])?;
        check_len("b", b, &[self.k, self.n])
    }
}

/// `C (+)= op(A)·op(B)` as described by `g` (see [`Gemm`]).
///
/// - out: `c [m, n]` (overwritten, or accumulated with [`Gemm::accumulating`]);
/// - in: `a [m, k]` or `[k, m]`, `b [k, n]` or `[n, k]`; a length that does not match the
///   dims is a [`HostError::Len`].
pub fn matmul(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) -> Result<(), HostError> {
    g.check(c.len(), a.len(), b.len())?;
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    if g.k == 0 {
        if !g.accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    if accelerate_matmul(c, a, b, g).is_none() {
        portable_matmul(c, a, b, g);
    }
    Ok(())
}

/// Accelerate's `cblas_sgemm`; `None` where it does not resolve or a dim does not fit `i32`.
/// Dims are non-zero and the lengths checked by the caller.
fn accelerate_matmul(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) -> Option<()> {
    let sgemm = accelerate::sgemm()?;
    let m = i32::try_from(g.m).ok()?;
    let n = i32::try_from(g.n).ok()?;
    let k = i32::try_from(g.k).ok()?;
    let (trans_a, lda) = if g.trans_a {
        (accelerate::CBLAS_TRANS, m)
    } else {
        (accelerate::CBLAS_NO_TRANS, k)
    };
    let (trans_b, ldb) = if g.trans_b {
        (accelerate::CBLAS_TRANS, k)
    } else {
        (accelerate::CBLAS_NO_TRANS, n)
    };
    let beta = if g.accumulate { 1.0 } else { 0.0 };
    // SAFETY: `Gemm::check` proved a, b and c hold exactly m·k, k·n and m·n elements; with
    // row-major order, the leading dimensions above are the row lengths of the stored A
    // ([m,k] or [k,m]), B ([k,n] or [n,k]) and C ([m,n]), so cblas_sgemm reads and writes
    // only inside the slices. `c` is exclusively borrowed and does not alias a or b.
    unsafe {
        sgemm(
            accelerate::CBLAS_ROW_MAJOR,
            trans_a,
            trans_b,
            m,
            n,
            k,
            1.0,
            a.as_ptr(),
            lda,
            b.as_ptr(),
            ldb,
            beta,
            c.as_mut_ptr(),
            n,
        )
    };
    Some(())
}

/// The `gemm` crate across the rayon pool. Dims are non-zero and the lengths checked by the
/// caller.
fn portable_matmul(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    // Slices never exceed isize::MAX elements, and every dim is at most a slice length.
    let (m, n, k) = (g.m as isize, g.n as isize, g.k as isize);
    // (column stride, row stride) of op(A) [m,k] and op(B) [k,n] in their storage.
    let (a_cs, a_rs) = if g.trans_a { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if g.trans_b { (k, 1) } else { (1, n) };
    // SAFETY: `Gemm::check` proved a, b and c hold exactly m·k, k·n and m·n elements; the
    // strides above address element (i, p) of op(A) at i·a_rs + p·a_cs < m·k, element (p, j)
    // of op(B) at p·b_rs + j·b_cs < k·n and element (i, j) of C at i·n + j < m·n. `c` is
    // exclusively borrowed and does not alias a or b. `read_dst` reads C only when
    // accumulating, and then dst := 1·dst + 1·A·B.
    unsafe {
        gemm::gemm(
            g.m,
            g.n,
            g.k,
            c.as_mut_ptr(),
            1,
            n,
            g.accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    };
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
pub fn overlap_dw<R: Send>(
    jobs: Vec<DwGemm<'_>>,
    work: impl FnOnce() -> R + Send,
) -> Result<R, HostError> {
    for job in &jobs {
        job.gemm.check(job.c.len(), job.a.len(), job.b.len())?;
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
