//! The one GEMM engine, on slices: the executor's packed SGEMM ([`super::sgemm`]) behind a
//! checked, safe call, for host code (classifier, weight gradients, attention tiles).
//!
//! Packing scratch persists per thread: the first product a thread runs allocates the most any
//! product can need (`KC·NC_MAX` floats of B panel plus one `MC·KC` A block per task, about
//! 7 MB of address space on two cores; pages are touched only as used), so no later product
//! allocates, whichever thread runs it. The rows of `C` are split across the rayon pool. On macOS, Accelerate's `cblas_sgemm` (the AMX units) is used
//! instead when it resolves.

use std::cell::RefCell;

use super::exec::Ptr;
use super::sgemm::{scratch_len, sgemm_acc, Mat, NC_MAX};
use crate::ane::accelerate;

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

    /// `(c, a, b)` element counts the product needs, or `None` when one overflows `usize`.
    pub fn lens(&self) -> Option<(usize, usize, usize)> {
        Some((
            self.m.checked_mul(self.n)?,
            self.m.checked_mul(self.k)?,
            self.k.checked_mul(self.n)?,
        ))
    }
}

/// A slice length that does not match the product's dims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gemm {m}x{n}x{k}: slices of {c}, {a}, {b} elements (C, A, B) do not fit")]
pub struct GemmLenError {
    /// Rows of `C`.
    pub m: usize,
    /// Columns of `C`.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// Length of `c`.
    pub c: usize,
    /// Length of `a`.
    pub a: usize,
    /// Length of `b`.
    pub b: usize,
}

thread_local! {
    /// This thread's packing scratch: grown on demand, never shrunk.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's packing scratch, grown to `grow` floats when it holds fewer
/// than `need` (so it holds at least `need`). A nested call on this thread (none exists today)
/// finds the scratch borrowed and packs into a buffer of its own rather than failing.
fn with_scratch(need: usize, grow: usize, f: impl FnOnce(&mut Vec<f32>)) {
    SCRATCH.with(|cell| {
        let mut own = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let scratch = match guard.as_mut() {
            Ok(s) => &mut **s,
            Err(_) => &mut own,
        };
        if scratch.len() < need {
            scratch.resize(need.max(grow), 0.0);
        }
        f(scratch)
    });
}

/// Allocates the packing scratch of every thread of the current rayon pool and of the calling
/// thread now (a model calls it when it is built), so that no product allocates later.
pub fn reserve_scratch() {
    let reserve = || {
        let most = scratch_len(NC_MAX, NC_MAX, rayon::current_num_threads().max(1));
        SCRATCH.with(|cell| {
            if let Ok(mut s) = cell.try_borrow_mut() {
                if s.len() < most {
                    s.resize(most, 0.0);
                }
            }
        });
    };
    reserve();
    rayon::broadcast(|_| reserve());
}

/// `C (+)= op(A)·op(B)` as `g` says (see [`Gemm`]), across the rayon pool.
///
/// - out: `c [m, n]` (overwritten, or accumulated with [`Gemm::accumulating`]);
/// - in: `a [m, k]` or `[k, m]`, `b [k, n]` or `[n, k]`;
///
/// a slice length that does not match the dims is a [`GemmLenError`] and nothing is written.
pub fn matmul(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) -> Result<(), GemmLenError> {
    let err = || GemmLenError {
        m: g.m,
        n: g.n,
        k: g.k,
        c: c.len(),
        a: a.len(),
        b: b.len(),
    };
    match g.lens() {
        Some(lens) if lens == (c.len(), a.len(), b.len()) => {}
        _ => return Err(err()),
    }
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    if g.k == 0 {
        if !g.accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    if accelerate_matmul(c, a, b, g).is_some() {
        return Ok(());
    }
    let tasks = rayon::current_num_threads().max(1);
    let need = scratch_len(g.m, g.n, tasks);
    let most = scratch_len(NC_MAX, NC_MAX, tasks);
    let (m, n, k) = (g.m as isize, g.n as isize, g.k as isize);
    // (row stride, column stride) of op(A) [m,k] and op(B) [k,n] in their storage.
    let (a_rs, a_cs) = if g.trans_a { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if g.trans_b { (1, k) } else { (n, 1) };
    with_scratch(need, most, |scratch| {
        // SAFETY: the lengths were checked above to be exactly m·k, k·n and m·n; the strides
        // address element (i, p) of op(A) at i·a_rs + p·a_cs < m·k, (p, j) of op(B) at
        // p·b_rs + j·b_cs < k·n and (i, j) of C at i·n + j < m·n. `c` is exclusively borrowed
        // (so it aliases neither a nor b) and, when accumulating, initialised; the scratch
        // holds scratch_len(m, n, tasks) floats that only this call uses.
        unsafe {
            sgemm_acc(
                g.m,
                g.n,
                g.k,
                Mat {
                    ptr: Ptr(a.as_ptr() as *mut f32),
                    rs: a_rs,
                    cs: a_cs,
                },
                Mat {
                    ptr: Ptr(b.as_ptr() as *mut f32),
                    rs: b_rs,
                    cs: b_cs,
                },
                Mat {
                    ptr: Ptr(c.as_mut_ptr()),
                    rs: n,
                    cs: 1,
                },
                Ptr(scratch.as_mut_ptr()),
                tasks,
                g.accumulate,
            )
        };
    });
    Ok(())
}

/// A strided matrix inside a slice: `rows × cols`, element `(i, j)` at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The elements (the view may skip some).
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements between consecutive rows.
    pub rs: usize,
    /// Elements between consecutive columns.
    pub cs: usize,
}

/// A writable strided matrix inside a slice (as [`View`]); its rows (or its columns) must lie
/// side by side without overlap, so every `(i, j)` is a distinct element.
#[derive(Debug)]
pub struct ViewMut<'a> {
    /// The elements (the view may skip some).
    pub data: &'a mut [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements between consecutive rows.
    pub rs: usize,
    /// Elements between consecutive columns.
    pub cs: usize,
}

/// Whether every element of a `rows × cols` view with strides `(rs, cs)` lies in `len`
/// elements (true for an empty view).
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(a, b)| a.checked_add(b))
        .is_some_and(|last| last < len)
}

/// Strided operands whose dims do not chain or that reach past their slices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "strided gemm: C {c_rows}x{c_cols}, A {a_rows}x{a_cols}, B {b_rows}x{b_cols} do not chain, \
     or a view reaches past its slice or repeats an element of C"
)]
pub struct ViewError {
    /// Rows, columns of C.
    pub c_rows: usize,
    /// Columns of C.
    pub c_cols: usize,
    /// Rows of A.
    pub a_rows: usize,
    /// Columns of A.
    pub a_cols: usize,
    /// Rows of B.
    pub b_rows: usize,
    /// Columns of B.
    pub b_cols: usize,
}

/// `C (+)= A·B` on strided views, on the calling thread only (for products inside an already
/// parallel loop, such as attention tiles): the same packed SGEMM as [`matmul`], with this
/// thread's packing scratch (no allocation once [`reserve_scratch`] ran). Views that do not
/// chain (`A.cols == B.rows`, `C = A.rows × B.cols`) or that reach past their slices are a
/// [`ViewError`] and nothing is written.
pub fn matmul_views(
    c: ViewMut<'_>,
    a: View<'_>,
    b: View<'_>,
    accumulate: bool,
) -> Result<(), ViewError> {
    let err = || ViewError {
        c_rows: c.rows,
        c_cols: c.cols,
        a_rows: a.rows,
        a_cols: a.cols,
        b_rows: b.rows,
        b_cols: b.cols,
    };
    // Distinct elements of C: rows side by side without overlap, or columns.
    let distinct = c.rows <= 1
        || c.cols <= 1
        || (c.cs > 0 && c.rs >= c.cols.saturating_mul(c.cs))
        || (c.rs > 0 && c.cs >= c.rows.saturating_mul(c.rs));
    let distinct = distinct && (c.rows <= 1 || c.rs > 0) && (c.cols <= 1 || c.cs > 0);
    if a.rows != c.rows
        || b.cols != c.cols
        || a.cols != b.rows
        || !distinct
        || !fits(c.data.len(), c.rows, c.cols, c.rs, c.cs)
        || !fits(a.data.len(), a.rows, a.cols, a.rs, a.cs)
        || !fits(b.data.len(), b.rows, b.cols, b.rs, b.cs)
    {
        return Err(err());
    }
    let (m, n, k) = (c.rows, c.cols, a.cols);
    if m == 0 || n == 0 || (k == 0 && accumulate) {
        return Ok(());
    }
    let isz = |x: usize| x as isize;
    let mat = |ptr: *mut f32, rs: usize, cs: usize| Mat {
        ptr: Ptr(ptr),
        rs: isz(rs),
        cs: isz(cs),
    };
    let need = scratch_len(m, n, 1);
    with_scratch(need, need, |scratch| {
        // SAFETY: `fits` checked that every (i, j) of each view lies inside its slice (so the
        // strides, each at most a slice length, fit isize); C is exclusively borrowed, so it
        // aliases neither A nor B, and its elements are distinct (checked); when accumulating
        // it is initialised (a slice). One task uses the scratch of scratch_len(m, n, 1)
        // floats, on this thread.
        unsafe {
            sgemm_acc(
                m,
                n,
                k,
                mat(a.data.as_ptr() as *mut f32, a.rs, a.cs),
                mat(b.data.as_ptr() as *mut f32, b.rs, b.cs),
                mat(c.data.as_mut_ptr(), c.rs, c.cs),
                Ptr(scratch.as_mut_ptr()),
                1,
                accumulate,
            )
        };
    });
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
    // SAFETY: the caller checked that a, b and c hold exactly m·k, k·n and m·n elements; with
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

#[cfg(test)]
mod tests {
    use super::*;

    fn op(x: &[f32], rows: usize, cols: usize, trans: bool, i: usize, j: usize) -> f64 {
        if trans {
            x[j * rows + i] as f64
        } else {
            x[i * cols + j] as f64
        }
    }

    #[test]
    fn every_transpose_and_accumulate_matches_f64() {
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((seed >> 9) % 2001) as f32 / 1000.0 - 1.0
        };
        for &(m, n, k) in &[(1, 1, 1), (37, 5, 19), (5, 130, 300), (200, 64, 8)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    for acc in [false, true] {
                        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
                        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
                        let c0: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
                        let mut c = c0.clone();
                        let mut g = Gemm::new(m, n, k);
                        g.trans_a = ta;
                        g.trans_b = tb;
                        g.accumulate = acc;
                        matmul(&mut c, &a, &b, g).unwrap();
                        for i in 0..m {
                            for j in 0..n {
                                let mut want: f64 = (0..k)
                                    .map(|p| op(&a, m, k, ta, i, p) * op(&b, k, n, tb, p, j))
                                    .sum();
                                if acc {
                                    want += c0[i * n + j] as f64;
                                }
                                let got = c[i * n + j] as f64;
                                assert!(
                                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                                    "{m}x{n}x{k} ta={ta} tb={tb} acc={acc} [{i},{j}]"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors_and_write_nothing() {
        let mut c = vec![1.0; 6];
        let e = matmul(&mut c, &[0.0; 5], &[0.0; 6], Gemm::new(2, 3, 3)).unwrap_err();
        assert_eq!((e.a, e.m, e.k), (5, 2, 3));
        assert_eq!(c, vec![1.0; 6]);
        let huge = Gemm::new(usize::MAX, 2, 2);
        assert!(matmul(&mut c, &[], &[], huge).is_err());
    }

    #[test]
    fn zero_depth_overwrites_or_keeps() {
        let mut c = vec![3.0; 4];
        matmul(&mut c, &[], &[], Gemm::new(2, 2, 0).accumulating()).unwrap();
        assert_eq!(c, vec![3.0; 4]);
        matmul(&mut c, &[], &[], Gemm::new(2, 2, 0)).unwrap();
        assert_eq!(c, vec![0.0; 4]);
    }

    #[test]
    fn strided_views_match_f64_and_reject_overreach() {
        // A = rows 1..4 of a [5, 7] buffer, columns 2..6, read transposed (A is 4x4 of it).
        let buf: Vec<f32> = (0..35).map(|x| (x as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..40).map(|x| (x as f32 * 0.11).cos()).collect();
        let (m, k, n) = (4, 3, 5);
        let a = View {
            data: &buf[9..],
            rows: m,
            cols: k,
            rs: 1,
            cs: 7,
        };
        let b = View {
            data: &bt,
            rows: k,
            cols: n,
            rs: 1,
            cs: 8,
        };
        let mut cbuf = vec![0.5f32; 60];
        let c0 = cbuf.clone();
        matmul_views(
            ViewMut {
                data: &mut cbuf[3..],
                rows: m,
                cols: n,
                rs: 11,
                cs: 2,
            },
            a,
            b,
            true,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|p| buf[9 + i + p * 7] as f64 * bt[p + j * 8] as f64)
                    .sum::<f64>()
                    + 0.5;
                let got = cbuf[3 + i * 11 + j * 2] as f64;
                assert!((got - want).abs() < 1e-5, "[{i},{j}] {got} vs {want}");
            }
        }
        // Elements outside the view are untouched.
        let touched = |x: usize| {
            x >= 3 && ((x - 3) % 11).is_multiple_of(2) && (x - 3) / 11 < m && (x - 3) % 11 / 2 < n
        };
        for (x, (&now, &was)) in cbuf.iter().zip(&c0).enumerate() {
            if !touched(x) {
                assert_eq!(now, was, "element {x}");
            }
        }
        // A view one element too long is refused, and C is not written.
        let short = View {
            data: &bt[..(k - 1) + (n - 1) * 8],
            ..b
        };
        let before = cbuf.clone();
        let c = ViewMut {
            data: &mut cbuf,
            rows: m,
            cols: n,
            rs: n,
            cs: 1,
        };
        assert!(matmul_views(c, a, short, false).is_err());
        assert_eq!(cbuf, before);
        let c = ViewMut {
            data: &mut cbuf,
            rows: m,
            cols: n,
            rs: 1,
            cs: 1,
        };
        assert!(matmul_views(c, a, b, false).is_err(), "repeated C elements");
    }
}
