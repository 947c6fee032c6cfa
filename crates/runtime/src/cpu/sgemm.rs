//! Single-precision GEMM that packs into caller-provided scratch, so an evaluation makes no
//! heap allocation (the `gemm` crate allocates its packing buffers on every call).
//!
//! `C[m×n] = A[m×k] · B[k×n]` for operands with arbitrary element strides (`rs` = stride
//! between rows, `cs` = stride between columns), BLIS-style: B is packed in `KC×NC` blocks
//! into panels of `nr` columns, A in `MC×KC` blocks into panels of `mr` rows, and an `mr×nr`
//! micro-kernel accumulates each tile: 8×32 with AVX-512, 6×16 with AVX2+FMA, 6×16 portable
//! Rust elsewhere (chosen once per call from the CPU's features). Row blocks of A are split
//! across tasks, each with its own A-packing scratch.

use super::exec::{split, Ptr};

/// Largest micro-kernel row count.
pub const MR_MAX: usize = 8;
/// Largest micro-kernel column count.
pub const NR_MAX: usize = 32;
/// Depth of one packed block.
pub const KC: usize = 768;
/// Rows of A packed per block (a multiple of every micro-kernel's rows).
pub const MC: usize = 96;
/// Most columns of B packed per block (a multiple of every micro-kernel's columns).
pub const NC_MAX: usize = 2048;

/// A matrix operand: base pointer and element strides.
#[derive(Debug, Clone, Copy)]
pub struct Mat {
    /// Element `[0, 0]`.
    pub ptr: Ptr,
    /// Stride between rows.
    pub rs: isize,
    /// Stride between columns.
    pub cs: isize,
}

/// Floats of scratch one product of `m×n` needs for `tasks` tasks (enough for either
/// orientation, see [`sgemm`]).
pub fn scratch_len(m: usize, n: usize, tasks: usize) -> usize {
    KC * nc(m.min(n)) + tasks.max(1) * MC * KC
}

fn nc(n: usize) -> usize {
    n.next_multiple_of(NR_MAX).min(NC_MAX)
}

/// A micro-kernel: `out[i·rs + j] (+)= Σ_p a[p·mr + i] · b[p·nr + j]` over `kc` packed steps,
/// added into `out` when `acc` (the `mr × nr` result goes straight into a full tile of a
/// row-major C, or into a scratch tile with `rs = nr`).
///
/// `ft`, when the CPU has one, writes the tile transposed instead: `out[j·cs + i]`, straight
/// into a full tile of a column-major C (a product run transposed, see [`sgemm_acc`]).
#[derive(Clone, Copy)]
struct Micro {
    mr: usize,
    nr: usize,
    f: MicroFn,
    ft: Option<MicroFn>,
}

/// A micro-kernel entry: `(kc, a panel, b panel, out, stride, accumulate)`.
type MicroFn = unsafe fn(usize, *const f32, *const f32, *mut f32, isize, bool);

fn micro() -> Micro {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Micro {
                mr: 8,
                nr: 32,
                f: micro_avx512,
                ft: None,
            };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Micro {
                mr: 6,
                nr: 16,
                f: micro_avx2,
                ft: Some(micro_avx2_t),
            };
        }
    }
    Micro {
        mr: 6,
        nr: 16,
        f: micro_portable,
        ft: None,
    }
}

/// Computes `C = A·B` (`m×k` times `k×n`), overwriting `C`.
///
/// # Safety
/// Every element addressed through the three `Mat`s must be valid (A, B readable, C writable
/// and not overlapping A or B); `scratch` must hold [`scratch_len`]`(m, n, tasks)` floats not
/// used by anyone else during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: Mat,
    scratch: Ptr,
    tasks: usize,
) {
    // SAFETY: per this function's contract.
    unsafe { sgemm_acc(m, n, k, a, b, c, scratch, tasks, false) }
}

/// [`sgemm`], adding into `C` (`C += A·B`) when `accumulate`.
///
/// # Safety
/// As [`sgemm`]; when `accumulate`, every element of C must also be readable and initialised.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_acc(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: Mat,
    scratch: Ptr,
    tasks: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 || (k == 0 && accumulate) {
        return;
    }
    if m < n && k < 4 * n {
        // Cᵀ = Bᵀ·Aᵀ: run with the longer dimension as rows, where the blocking is tuned.
        // Not for a long depth (the classifier's dx, k = V): there packing the operands is
        // the larger cost, and B's rows (each a contiguous run of n) pack faster as B.
        let t = |x: Mat| Mat {
            ptr: x.ptr,
            rs: x.cs,
            cs: x.rs,
        };
        // SAFETY: the same elements, addressed with swapped strides.
        return unsafe { sgemm_rows(n, m, k, t(b), t(a), t(c), scratch, tasks, accumulate) };
    }
    // SAFETY: per this function's contract.
    unsafe { sgemm_rows(m, n, k, a, b, c, scratch, tasks, accumulate) }
}

/// [`sgemm_acc`] for `m >= n`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_rows(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: Mat,
    scratch: Ptr,
    tasks: usize,
    accumulate: bool,
) {
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: C[i, j] is writable per the contract.
                unsafe { *c.ptr.get().offset(i as isize * c.rs + j as isize * c.cs) = 0.0 };
            }
        }
        return;
    }
    let mk = micro();
    let ncb = nc(n);
    let mcb = row_block(m, tasks, mk.mr);
    let bp = scratch;
    // SAFETY: the A-packing areas follow the B panel area inside `scratch`.
    let ap_base = Ptr(unsafe { scratch.get().add(KC * ncb) });
    for jc in (0..n).step_by(ncb) {
        let nb = ncb.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kb = KC.min(k - pc);
            // The B block's panels packed across the tasks (packing it on one thread would
            // leave the others idle for a quarter of a long-k product).
            let panels = nb.div_ceil(mk.nr);
            let min_panels = if kb * nb < (1 << 15) { panels } else { 1 };
            split(panels, tasks, min_panels, |_, range| {
                let j0 = range.start * mk.nr;
                let w = (range.end * mk.nr).min(nb) - j0;
                // SAFETY: B block inside B; bp holds KC·ncb floats (nb rounded up to nr <= ncb)
                // and these panels occupy nr·kb floats each from panel range.start on, which
                // no other task writes.
                unsafe { pack_b(b, pc, jc + j0, kb, w, mk.nr, bp.get().add(j0 * kb)) };
            });
            let blocks = m.div_ceil(mcb);
            let min_blocks = if m * nb * kb < (1 << 17) { blocks } else { 1 };
            split(blocks, tasks, min_blocks, |task, range| {
                // SAFETY: each task owns its MC·KC A-packing area (mcb <= MC) and writes its own
                // rows of C.
                unsafe {
                    let ap = ap_base.get().add(task * MC * KC);
                    let end = range.end;
                    for blk in range {
                        let ic = blk * mcb;
                        let mb = mcb.min(m - ic);
                        pack_a(a, ic, pc, mb, kb, mk.mr, ap);
                        // This task's next block is requested while this one is multiplied.
                        let mut ahead = if blk + 1 < end {
                            let next = ic + mcb;
                            Ahead::block(a, next, pc, mcb.min(m - next), kb)
                        } else {
                            Ahead::default()
                        };
                        macro_tile(
                            mk,
                            (mb, nb, kb),
                            (ap, bp.get()),
                            c,
                            (ic, jc),
                            accumulate || pc > 0,
                            &mut ahead,
                        );
                    }
                }
            });
        }
    }
}

/// Rows of A per packed block: at most [`MC`], a multiple of `mr`, and sized so the blocks
/// divide evenly among `tasks` (288 rows on two tasks are four blocks of 72, not 96 + 96 + 96
/// with one task doing two).
fn row_block(m: usize, tasks: usize, mr: usize) -> usize {
    let tasks = tasks.max(1);
    let blocks = tasks * m.div_ceil(tasks * MC);
    m.div_ceil(blocks).next_multiple_of(mr).min(MC)
}

/// Packs `B[pc..pc+kb, jc..jc+nb]` into panels of `nr` columns: `dst[panel][p][j]`,
/// zero-padded.
unsafe fn pack_b(b: Mat, pc: usize, jc: usize, kb: usize, nb: usize, nr: usize, dst: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    let avx = b.rs == 1 && nr.is_multiple_of(8) && std::arch::is_x86_feature_detected!("avx");
    if b.cs == 1 {
        // SAFETY: per the caller's contract; row p of the block starts at (pc + p, jc).
        return unsafe {
            let base = b.ptr.get().offset(pc as isize * b.rs + jc as isize);
            pack_unit(base, b.rs, nb, kb, nr, dst)
        };
    }
    // SAFETY: per the caller's contract.
    unsafe {
        let mut d = dst;
        for j0 in (0..nb).step_by(nr) {
            let w = nr.min(nb - j0);
            let mut p0 = 0;
            // Columns contiguous in memory (column-major B): transpose 8×8 blocks.
            #[cfg(target_arch = "x86_64")]
            if avx && w == nr {
                let col0 = b
                    .ptr
                    .get()
                    .offset(pc as isize * b.rs + (jc + j0) as isize * b.cs);
                while p0 + 8 <= kb {
                    for jj in (0..nr).step_by(8) {
                        let src = col0.offset(p0 as isize + jj as isize * b.cs);
                        transpose8_avx(src, b.cs, 8, d.add(p0 * nr + jj), nr, 8);
                    }
                    p0 += 8;
                }
                d = d.add(p0 * nr);
            }
            for p in p0..kb {
                let row = b
                    .ptr
                    .get()
                    .offset((pc + p) as isize * b.rs + (jc + j0) as isize * b.cs);
                for j in 0..nr {
                    *d.add(j) = if j < w {
                        *row.offset(j as isize * b.cs)
                    } else {
                        0.0
                    };
                }
                d = d.add(nr);
            }
        }
    }
}

/// Packs `len × kb` elements whose panel dimension is contiguous (element `(i, p)` at
/// `src + i + p·ps`) into panels of `w`: `dst[i / w][p][i % w]`, the last panel zero-padded.
/// In groups of [`PACK_STEPS`] steps: each group's rows are read from L1 while every panel's
/// slice of the group is written as one contiguous run (writing one step of every panel at a
/// time touches panels `w·kb` floats apart, which share a few L1 sets and evict each other).
///
/// # Safety
/// Every `(i, p)` with `i < len`, `p < kb` is readable; `dst` holds `len.div_ceil(w)·w·kb`
/// writable floats not overlapping the source.
unsafe fn pack_unit(src: *const f32, ps: isize, len: usize, kb: usize, w: usize, dst: *mut f32) {
    let (full, rem) = (len / w, len % w);
    // SAFETY: per the contract; panel `ip` occupies `w·kb` floats from `ip·w·kb`.
    unsafe {
        for p0 in (0..kb).step_by(PACK_STEPS) {
            let steps = p0..(p0 + PACK_STEPS).min(kb);
            // The next group's rows are fetched while this one is copied (the rows are
            // usually far apart in memory, and each missing line stalls the copy).
            for p in steps.end..(steps.end + PACK_STEPS).min(kb) {
                prefetch_run::<INTO_L1>(src.wrapping_offset(p as isize * ps), len);
            }
            for ip in 0..full {
                for p in steps.clone() {
                    let row = src.offset(p as isize * ps);
                    copy_short(row.add(ip * w), dst.add(ip * w * kb + p * w), w);
                }
            }
            if rem > 0 {
                for p in steps {
                    let row = src.offset(p as isize * ps);
                    let d = dst.add(full * w * kb + p * w);
                    for i in 0..w {
                        *d.add(i) = if i < rem { *row.add(full * w + i) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Prefetch into L1 (x86's `_MM_HINT_T0`).
const INTO_L1: i32 = 3;
/// Prefetch into L2 only (x86's `_MM_HINT_T1`).
const INTO_L2: i32 = 2;
#[cfg(target_arch = "x86_64")]
const _: () =
    assert!(INTO_L1 == std::arch::x86_64::_MM_HINT_T0 && INTO_L2 == std::arch::x86_64::_MM_HINT_T1);

/// Asks for the cache lines of `len` floats at `src` into the cache level `HINT` ([`INTO_L1`]
/// or [`INTO_L2`]): a hint that never faults, even outside any allocation, so the address
/// needs no contract.
#[inline(always)]
fn prefetch_run<const HINT: i32>(src: *const f32, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in (0..len).step_by(16) {
        // SAFETY: a prefetch is a hint that never faults and reads nothing into the program.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(src.wrapping_add(i).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, len);
}

/// Steps per group in [`pack_unit`].
const PACK_STEPS: usize = 16;

/// Copies `n` floats from `src` to `dst` (not overlapping), as fixed-size moves for the
/// panel widths the micro-kernels use instead of a call to `memcpy` per panel row.
///
/// # Safety
/// As [`std::ptr::copy_nonoverlapping`] for `n` floats.
#[inline(always)]
unsafe fn copy_short(src: *const f32, dst: *mut f32, n: usize) {
    /// One unaligned load and store of `N` floats (arms of one `memcpy` each would be merged
    /// back into a single variable-length call).
    #[inline(always)]
    unsafe fn fixed<const N: usize>(src: *const f32, dst: *mut f32) {
        // SAFETY: per `copy_short`'s contract with `n == N`.
        unsafe {
            let v = src.cast::<[f32; N]>().read_unaligned();
            dst.cast::<[f32; N]>().write_unaligned(v);
        }
    }
    // SAFETY: per the contract; each arm copies exactly `n` floats.
    unsafe {
        match n {
            6 => fixed::<6>(src, dst),
            8 => fixed::<8>(src, dst),
            16 => fixed::<16>(src, dst),
            32 => fixed::<32>(src, dst),
            _ => std::ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

/// Packs `A[ic..ic+mb, pc..pc+kb]` into panels of `mr` rows: `dst[panel][p][i]`, zero-padded.
unsafe fn pack_a(a: Mat, ic: usize, pc: usize, mb: usize, kb: usize, mr: usize, dst: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    let avx = mr <= 8 && a.cs == 1 && std::arch::is_x86_feature_detected!("avx");
    if a.rs == 1 {
        // SAFETY: per the caller's contract; column p of the block starts at (ic, pc + p).
        return unsafe {
            let base = a.ptr.get().offset(ic as isize + pc as isize * a.cs);
            pack_unit(base, a.cs, mb, kb, mr, dst)
        };
    }
    // SAFETY: per the caller's contract.
    unsafe {
        let mut d = dst;
        for i0 in (0..mb).step_by(mr) {
            let h = mr.min(mb - i0);
            let base = a
                .ptr
                .get()
                .offset((ic + i0) as isize * a.rs + pc as isize * a.cs);
            let mut p0 = 0;
            // Rows contiguous in memory (row-major A): transpose blocks of `h` rows by 8
            // steps in registers, the rows past `h` as zeros.
            #[cfg(target_arch = "x86_64")]
            if avx {
                while p0 + 8 <= kb {
                    transpose8_avx(base.add(p0), a.rs, h, d, mr, mr);
                    d = d.add(8 * mr);
                    p0 += 8;
                }
            }
            for p in p0..kb {
                let col = base.offset(p as isize * a.cs);
                for i in 0..mr {
                    *d.add(i) = if i < h {
                        *col.offset(i as isize * a.rs)
                    } else {
                        0.0
                    };
                }
                d = d.add(mr);
            }
        }
    }
}

/// Writes the transpose of the `rows`×8 block at `src` (rows `rs` floats apart; rows past
/// `rows` read as zeros) to 8 rows of `width` floats at `dst` (rows `ds` floats apart):
/// `dst[k·ds + i] = src[i·rs + k]` for `i < width`.
///
/// # Safety
/// `rows <= 8`, `width <= 8`; the `rows` rows of 8 floats at `src` are readable, the 8 rows
/// of `width` floats at `dst` writable, and the CPU has AVX. Only those floats are written
/// once the call returns (with `width == ds == 6` some are written twice, the final value
/// last).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8_avx(
    src: *const f32,
    rs: isize,
    rows: usize,
    dst: *mut f32,
    ds: usize,
    width: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY: per the contract; unaligned loads and stores only. Rows past `rows` are never
    // read; lanes past `width` are never written, except (width == ds == 6) lanes that are
    // the next row's and are overwritten by its store.
    unsafe {
        let r = |i: usize| {
            if i < rows {
                _mm256_loadu_ps(src.offset(i as isize * rs))
            } else {
                _mm256_setzero_ps()
            }
        };
        let out = transpose8x8([r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7)]);
        if width == 8 {
            for (k, v) in out.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(k * ds), v);
            }
        } else if width == 6 && ds == 6 {
            // Rows side by side (a 6-row A panel): full stores whose 2 extra lanes the next
            // row's store overwrites, and exactly 6 floats for the last row. (Masked stores
            // are microcoded and slow on AMD cores.)
            for (k, &v) in out[..7].iter().enumerate() {
                _mm256_storeu_ps(dst.add(k * 6), v);
            }
            let last = dst.add(42);
            _mm_storeu_ps(last, _mm256_castps256_ps128(out[7]));
            let hi = _mm256_extractf128_ps::<1>(out[7]);
            _mm_store_sd(last.add(4).cast::<f64>(), _mm_castps_pd(hi));
        } else {
            let lane = |i: i32| if (i as usize) < width { -1 } else { 0 };
            let mask = _mm256_setr_epi32(
                lane(0),
                lane(1),
                lane(2),
                lane(3),
                lane(4),
                lane(5),
                lane(6),
                lane(7),
            );
            for (k, v) in out.into_iter().enumerate() {
                _mm256_maskstore_ps(dst.add(k * ds), mask, v);
            }
        }
    }
}

/// Multiplies one packed `mb×kb` A block by one packed `kb×nb` B block into C.
#[allow(clippy::too_many_arguments)]
unsafe fn macro_tile(
    mk: Micro,
    (mb, nb, kb): (usize, usize, usize),
    (ap, bp): (*const f32, *const f32),
    c: Mat,
    (ic, jc): (usize, usize),
    acc: bool,
    ahead: &mut Ahead,
) {
    let mut tile = [0f32; MR_MAX * NR_MAX];
    let (mr, nr) = (mk.mr, mk.nr);
    let per_tile = ahead.lines().div_ceil(nb.div_ceil(nr) * mb.div_ceil(mr));
    for (jp, j0) in (0..nb).step_by(nr).enumerate() {
        let w = nr.min(nb - j0);
        for (ip, i0) in (0..mb).step_by(mr).enumerate() {
            let h = mr.min(mb - i0);
            ahead.issue(per_tile);
            // SAFETY: panel offsets stay inside the packed blocks; the tile holds mr·nr floats;
            // a full tile of a row-major C is mr rows of nr elements of C.
            unsafe {
                let (a, b) = (ap.add(ip * mr * kb), bp.add(jp * nr * kb));
                let cbase = c
                    .ptr
                    .get()
                    .offset((ic + i0) as isize * c.rs + (jc + j0) as isize * c.cs);
                if c.cs == 1 && h == mr && w == nr {
                    (mk.f)(kb, a, b, cbase, c.rs, acc);
                    continue;
                }
                if let (1, Some(ft), true, true) = (c.rs, mk.ft, h == mr, w == nr) {
                    // A full tile of a column-major C: nr columns of mr contiguous rows.
                    ft(kb, a, b, cbase, c.cs, acc);
                    continue;
                }
                (mk.f)(kb, a, b, tile.as_mut_ptr(), nr as isize, false);
                if c.rs == 1 && c.cs != 1 {
                    // Column-major C (a transposed product): each column's h rows are one
                    // contiguous run.
                    for j in 0..w {
                        let ccol = cbase.offset(j as isize * c.cs);
                        for i in 0..h {
                            let (d, v) = (ccol.add(i), tile[i * nr + j]);
                            *d = if acc { *d + v } else { v };
                        }
                    }
                    continue;
                }
                for i in 0..h {
                    let crow = cbase.offset(i as isize * c.rs);
                    let t = &tile[i * nr..i * nr + w];
                    if c.cs == 1 {
                        if acc {
                            let dst = std::slice::from_raw_parts_mut(crow, w);
                            dst.iter_mut().zip(t).for_each(|(d, &v)| *d += v);
                        } else {
                            copy_short(t.as_ptr(), crow, w);
                        }
                    } else {
                        for (j, &v) in t.iter().enumerate() {
                            let d = crow.offset(j as isize * c.cs);
                            *d = if acc { *d + v } else { v };
                        }
                    }
                }
            }
        }
    }
}

/// The cache lines of a block of A to request while the current block is multiplied (its
/// rows usually come from memory, and packing them would otherwise stall on every line):
/// `runs` runs of `len` floats, `stride` floats apart, requested a few lines per tile.
#[derive(Debug, Default)]
struct Ahead {
    base: Option<*const f32>,
    runs: usize,
    len: usize,
    stride: isize,
    /// Lines requested so far.
    done: usize,
}

impl Ahead {
    /// `A[ic..ic+mb, pc..pc+kb]` when one of its strides is 1 (otherwise nothing).
    fn block(a: Mat, ic: usize, pc: usize, mb: usize, kb: usize) -> Ahead {
        let base = a
            .ptr
            .get()
            .wrapping_offset(ic as isize * a.rs + pc as isize * a.cs)
            .cast_const();
        let (runs, len, stride) = match (a.rs, a.cs) {
            (_, 1) => (mb, kb, a.rs),
            (1, _) => (kb, mb, a.cs),
            _ => return Ahead::default(),
        };
        Ahead {
            base: Some(base),
            runs,
            len,
            stride,
            done: 0,
        }
    }

    fn lines_per_run(&self) -> usize {
        self.len.div_ceil(16)
    }

    /// Lines in all.
    fn lines(&self) -> usize {
        if self.base.is_some() {
            self.runs * self.lines_per_run()
        } else {
            0
        }
    }

    /// Requests the next `n` lines.
    fn issue(&mut self, n: usize) {
        let Some(base) = self.base else { return };
        let (lpr, end) = (self.lines_per_run(), self.lines());
        for line in self.done..(self.done + n).min(end) {
            let (run, l) = (line / lpr, line % lpr);
            let at = base
                .wrapping_offset(run as isize * self.stride)
                .wrapping_add(l * 16);
            // Into L2 only: the tiles being multiplied keep L1.
            prefetch_run::<INTO_L2>(at, 1);
        }
        self.done = (self.done + n).min(end);
    }
}

/// Portable 6×16 micro-kernel.
unsafe fn micro_portable(
    kc: usize,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    rs: isize,
    acc: bool,
) {
    const MR: usize = 6;
    const NR: usize = 16;
    let mut sum = [[0f32; NR]; MR];
    for p in 0..kc {
        // SAFETY: packed panels hold kc steps of MR and NR floats.
        let (ar, br) = unsafe {
            (
                std::slice::from_raw_parts(a.add(p * MR), MR),
                std::slice::from_raw_parts(b.add(p * NR), NR),
            )
        };
        for i in 0..MR {
            for j in 0..NR {
                sum[i][j] += ar[i] * br[j];
            }
        }
    }
    for (i, row) in sum.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: `out` addresses MR rows of NR floats, rows `rs` apart.
            unsafe {
                let d = out.offset(i as isize * rs + j as isize);
                *d = if acc { *d + v } else { v };
            }
        }
    }
}

/// The 12 ymm accumulators of the AVX2 6×16 micro-kernel after `kc` steps: row `i`'s
/// columns 0–7 in `[2i]`, 8–15 in `[2i + 1]`.
///
/// # Safety
/// The CPU has AVX2 and FMA; the packed panels hold `kc·6` and `kc·16` floats.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx2_tile(kc: usize, a: *const f32, b: *const f32) -> [std::arch::x86_64::__m256; 12] {
    use std::arch::x86_64::*;
    const MR: usize = 6;
    const NR: usize = 16;
    // SAFETY: per the contract; unaligned loads only.
    unsafe {
        let mut c = [_mm256_setzero_ps(); 2 * MR];
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            let ap = a.add(p * MR);
            for i in 0..MR {
                let ai = _mm256_broadcast_ss(&*ap.add(i));
                c[2 * i] = _mm256_fmadd_ps(ai, b0, c[2 * i]);
                c[2 * i + 1] = _mm256_fmadd_ps(ai, b1, c[2 * i + 1]);
            }
        }
        c
    }
}

/// AVX2+FMA 6×16 micro-kernel (12 ymm accumulators).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, a: *const f32, b: *const f32, out: *mut f32, rs: isize, acc: bool) {
    use std::arch::x86_64::*;
    // SAFETY: the packed panels hold kc·6 and kc·16 floats; `out` addresses 6 rows of 16
    // floats, rows `rs` apart; unaligned loads/stores only.
    unsafe {
        let c = avx2_tile(kc, a, b);
        for i in 0..6 {
            let row = out.offset(i as isize * rs);
            let (mut lo, mut hi) = (c[2 * i], c[2 * i + 1]);
            if acc {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8)));
            }
            _mm256_storeu_ps(row, lo);
            _mm256_storeu_ps(row.add(8), hi);
        }
    }
}

/// [`micro_avx2`] writing the tile transposed: `out[j·cs + i]` for the 6 rows `i` and 16
/// columns `j` (16 runs of 6 contiguous floats, `cs` apart), each run as one 4-float and one
/// 2-float store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2_t(
    kc: usize,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    cs: isize,
    acc: bool,
) {
    use std::arch::x86_64::*;
    // SAFETY: the packed panels hold kc·6 and kc·16 floats; `out` addresses 16 runs of 6
    // floats, `cs` apart; unaligned loads/stores only.
    unsafe {
        let c = avx2_tile(kc, a, b);
        let z = _mm256_setzero_ps();
        for half in 0..2 {
            let r = |i: usize| c[2 * i + half];
            let cols = transpose8x8([r(0), r(1), r(2), r(3), r(4), r(5), z, z]);
            for (j, v) in cols.into_iter().enumerate() {
                let col = out.offset((half * 8 + j) as isize * cs);
                let (mut lo, mut hi) = (_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                if acc {
                    lo = _mm_add_ps(lo, _mm_loadu_ps(col));
                    let prev = _mm_castpd_ps(_mm_load_sd(col.add(4).cast::<f64>()));
                    hi = _mm_add_ps(hi, prev);
                }
                _mm_storeu_ps(col, lo);
                _mm_store_sd(col.add(4).cast::<f64>(), _mm_castps_pd(hi));
            }
        }
    }
}

/// The transpose of 8 rows of 8 floats held in registers: lane `i` of result `k` is lane `k`
/// of row `i`.
///
/// # Safety
/// The CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose8x8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let [r0, r1, r2, r3, r4, r5, r6, r7] = r;
    // SAFETY: register shuffles only, on a CPU with AVX per the contract.
    unsafe {
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}

/// AVX-512 8×32 micro-kernel (16 zmm accumulators).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512(
    kc: usize,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    rs: isize,
    acc: bool,
) {
    use std::arch::x86_64::*;
    const MR: usize = 8;
    const NR: usize = 32;
    // SAFETY: the packed panels hold kc·MR and kc·NR floats; `out` addresses MR rows of NR
    // floats, rows `rs` apart; unaligned loads/stores only.
    unsafe {
        let mut c = [_mm512_setzero_ps(); 2 * MR];
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
            let ap = a.add(p * MR);
            for i in 0..MR {
                let ai = _mm512_set1_ps(*ap.add(i));
                c[2 * i] = _mm512_fmadd_ps(ai, b0, c[2 * i]);
                c[2 * i + 1] = _mm512_fmadd_ps(ai, b1, c[2 * i + 1]);
            }
        }
        for i in 0..MR {
            let row = out.offset(i as isize * rs);
            let (mut lo, mut hi) = (c[2 * i], c[2 * i + 1]);
            if acc {
                lo = _mm512_add_ps(lo, _mm512_loadu_ps(row));
                hi = _mm512_add_ps(hi, _mm512_loadu_ps(row.add(16)));
            }
            _mm512_storeu_ps(row, lo);
            _mm512_storeu_ps(row.add(16), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    /// Every micro-kernel this CPU can run (the portable one always), written into a strided
    /// C with and without accumulation, against f64.
    #[test]
    fn every_micro_kernel_matches_f64_into_strided_c() {
        /// `ft` into a column-major C (columns `mr + 5` apart), with and without accumulation.
        fn transposed_tile_matches_f64(mr: usize, nr: usize, ft: MicroFn) {
            let (kc, cs) = (29, mr + 5);
            let a: Vec<f32> = (0..kc * mr)
                .map(|i| (i % 11) as f32 * 0.25 - 1.25)
                .collect();
            let b: Vec<f32> = (0..kc * nr).map(|i| (i % 9) as f32 * 0.5 - 2.0).collect();
            for acc in [false, true] {
                let mut out: Vec<f32> = (0..nr * cs).map(|i| i as f32 * 0.01).collect();
                let before = out.clone();
                // SAFETY: the panels hold kc·mr and kc·nr floats; out holds nr runs of cs >= mr.
                unsafe {
                    ft(
                        kc,
                        a.as_ptr(),
                        b.as_ptr(),
                        out.as_mut_ptr(),
                        cs as isize,
                        acc,
                    )
                };
                for j in 0..nr {
                    for i in 0..cs {
                        let (got, old) = (out[j * cs + i] as f64, before[j * cs + i] as f64);
                        let want = if i >= mr {
                            old
                        } else {
                            let dot: f64 = (0..kc)
                                .map(|p| a[p * mr + i] as f64 * b[p * nr + j] as f64)
                                .sum();
                            dot + if acc { old } else { 0.0 }
                        };
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "transposed {mr}x{nr} acc={acc} [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }

        let mut kernels = vec![Micro {
            mr: 6,
            nr: 16,
            f: micro_portable,
            ft: None,
        }];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(Micro {
                    mr: 6,
                    nr: 16,
                    f: micro_avx2,
                    ft: Some(micro_avx2_t),
                });
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Micro {
                    mr: 8,
                    nr: 32,
                    f: micro_avx512,
                    ft: None,
                });
            }
        }
        for mk in kernels {
            let (mr, nr, kc, rs) = (mk.mr, mk.nr, 37, mk.nr + 3);
            if let Some(ft) = mk.ft {
                transposed_tile_matches_f64(mr, nr, ft);
            }
            let a: Vec<f32> = (0..kc * mr).map(|i| (i % 13) as f32 * 0.25 - 1.5).collect();
            let b: Vec<f32> = (0..kc * nr).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
            for acc in [false, true] {
                let mut out: Vec<f32> = (0..mr * rs).map(|i| i as f32 * 0.01).collect();
                let before = out.clone();
                // SAFETY: the panels hold kc·mr and kc·nr floats; out holds mr rows of rs >= nr.
                unsafe {
                    (mk.f)(
                        kc,
                        a.as_ptr(),
                        b.as_ptr(),
                        out.as_mut_ptr(),
                        rs as isize,
                        acc,
                    )
                };
                for i in 0..mr {
                    for j in 0..rs {
                        let got = out[i * rs + j] as f64;
                        let want = if j >= nr {
                            before[i * rs + j] as f64
                        } else {
                            let dot: f64 = (0..kc)
                                .map(|p| a[p * mr + i] as f64 * b[p * nr + j] as f64)
                                .sum();
                            dot + if acc { before[i * rs + j] as f64 } else { 0.0 }
                        };
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{mr}x{nr} acc={acc} [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn matches_f64_reference_for_odd_shapes_and_strides() {
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((seed >> 9) % 2001) as f32 / 1000.0 - 1.0
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (73, 33, 300),
            (6, 16, 256),
            (130, 70, 513),
            (5, 40, 0),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let want = reference(m, n, k, &a, &b);
            for tasks in [1, 2] {
                // Row-major C, and a transposed (column-major) C.
                for c_rowmajor in [true, false] {
                    let mut c = vec![f32::NAN; m * n];
                    let mut scratch = vec![0f32; scratch_len(m, n, tasks)];
                    let (rs, cs) = if c_rowmajor {
                        (n as isize, 1)
                    } else {
                        (1, m as isize)
                    };
                    // A read transposed-in-memory: store Aᵀ and pass swapped strides.
                    let at: Vec<f32> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect();
                    // SAFETY: the vectors hold exactly the elements the strides address.
                    unsafe {
                        sgemm(
                            m,
                            n,
                            k,
                            Mat {
                                ptr: Ptr(at.as_ptr() as *mut f32),
                                rs: 1,
                                cs: m as isize,
                            },
                            Mat {
                                ptr: Ptr(b.as_ptr() as *mut f32),
                                rs: n as isize,
                                cs: 1,
                            },
                            Mat {
                                ptr: Ptr(c.as_mut_ptr()),
                                rs,
                                cs,
                            },
                            Ptr(scratch.as_mut_ptr()),
                            tasks,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let got = c[(i as isize * rs + j as isize * cs) as usize] as f64;
                            let w = want[i * n + j];
                            assert!(
                                (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                "({m},{n},{k}) [{i},{j}] {got} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Throughput against the gemm crate: `cargo test --release -p ane-runtime --lib
    /// sgemm::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn throughput() {
        let (m, n, k) = (768usize, 256usize, 768usize);
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let tasks = rayon::current_num_threads();
        let mut scratch = vec![0f32; scratch_len(m, n, tasks)];
        let flops = 2.0 * (m * n * k) as f64;
        for round in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..20 {
                // SAFETY: contiguous row-major operands of the stated sizes.
                unsafe {
                    sgemm(
                        m,
                        n,
                        k,
                        Mat {
                            ptr: Ptr(a.as_ptr() as *mut f32),
                            rs: k as isize,
                            cs: 1,
                        },
                        Mat {
                            ptr: Ptr(b.as_ptr() as *mut f32),
                            rs: n as isize,
                            cs: 1,
                        },
                        Mat {
                            ptr: Ptr(c.as_mut_ptr()),
                            rs: n as isize,
                            cs: 1,
                        },
                        Ptr(scratch.as_mut_ptr()),
                        tasks,
                    )
                };
            }
            let ours = flops * 20.0 / t.elapsed().as_secs_f64() / 1e9;
            let t = std::time::Instant::now();
            for _ in 0..20 {
                // SAFETY: as above.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(tasks),
                    )
                };
            }
            let theirs = flops * 20.0 / t.elapsed().as_secs_f64() / 1e9;
            eprintln!("round {round}: ours {ours:.1} GFLOP/s, gemm crate {theirs:.1} GFLOP/s, ratio {:.3}", ours / theirs);
        }
    }
}
