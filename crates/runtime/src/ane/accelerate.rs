//! Accelerate's `cblas_sgemm`, resolved at run time like everything Apple: on macOS it runs
//! the host GEMMs (weight gradients, classifier) on the AMX units. Everywhere else — and on a
//! Mac where it does not resolve — [`sgemm`] is `None` and callers use the `gemm` crate, the
//! portable fallback the CPU device uses.

use std::ffi::c_void;
use std::sync::OnceLock;

/// `CblasRowMajor` (cblas.h).
pub const CBLAS_ROW_MAJOR: i32 = 101;
/// `CblasNoTrans`.
pub const CBLAS_NO_TRANS: i32 = 111;
/// `CblasTrans`.
pub const CBLAS_TRANS: i32 = 112;

/// Path of Accelerate.
pub const ACCELERATE: &str = "/System/Library/Frameworks/Accelerate.framework/Accelerate";

/// `void cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)`:
/// `C = alpha·op(A)·op(B) + beta·C` with `op(A)` `[M,K]`, `op(B)` `[K,N]`, `C` `[M,N]`.
pub type SgemmFn = unsafe extern "C" fn(
    order: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

/// Accelerate's `cblas_sgemm`, or `None` where Accelerate does not exist.
pub fn sgemm() -> Option<SgemmFn> {
    static SGEMM: OnceLock<Option<SgemmFn>> = OnceLock::new();
    *SGEMM.get_or_init(|| {
        let lib = super::sys::Library::open(ACCELERATE).ok()?;
        let p: *mut c_void = lib.symbol(c"cblas_sgemm").ok()?.as_ptr();
        // SAFETY: `cblas_sgemm` has exactly the C signature of `SgemmFn` (cblas.h) and `p` is
        // its address.
        Some(unsafe { std::mem::transmute::<*mut c_void, SgemmFn>(p) })
    })
}

/// Row-major `c[M,N] = a[M,K] · b[K,N]` (`beta = 0`) with Accelerate; `None` when Accelerate
/// is absent or a dimension does not fit `i32`, so the caller runs its fallback.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) -> Option<()> {
    let f = sgemm()?;
    let (mi, ni, ki) = (
        i32::try_from(m).ok()?,
        i32::try_from(n).ok()?,
        i32::try_from(k).ok()?,
    );
    let fits = a.len() >= m.checked_mul(k)?
        && b.len() >= k.checked_mul(n)?
        && c.len() >= m.checked_mul(n)?;
    if !fits {
        return None;
    }
    // SAFETY: the slices hold at least M·K, K·N and M·N elements (checked above), which is
    // what a row-major, untransposed sgemm with lda = K, ldb = N, ldc = N reads and writes.
    unsafe {
        f(
            CBLAS_ROW_MAJOR,
            CBLAS_NO_TRANS,
            CBLAS_NO_TRANS,
            mi,
            ni,
            ki,
            1.0,
            a.as_ptr(),
            ki,
            b.as_ptr(),
            ni,
            0.0,
            c.as_mut_ptr(),
            ni,
        )
    };
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_is_exact_where_accelerate_exists() {
        let (m, n, k) = (3, 2, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i * i) as f32 * 0.5).collect();
        let mut c = vec![0.0; m * n];
        if matmul(&a, &b, &mut c, m, n, k).is_none() {
            assert!(sgemm().is_none());
            return;
        }
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert_eq!(c[i * n + j], want);
            }
        }
    }
}
