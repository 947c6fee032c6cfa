//! Single-precision GEMM that packs into caller-provided scratch, so an evaluation makes no
//! heap allocation (the `gemm` crate allocates its packing buffers on every call).
//!
//! `C[m×n] = A[m×k] · B[k×n]` for operands with arbitrary element strides (`rs` = stride
//! between rows, `cs` = stride between columns), BLIS-style: B is packed in `KC×NC` blocks
//! into panels of [`NR`] columns, A in `MC×KC` blocks into panels of [`MR`] rows, and an
//! `MR×NR` micro-kernel (AVX2+FMA where the CPU has it, portable Rust elsewhere) accumulates
//! each tile. Row blocks of A are split across tasks, each with its own A-packing scratch.

use super::exec::{split, Ptr};

/// Rows of the micro-kernel tile.
pub const MR: usize = 6;
/// Columns of the micro-kernel tile.
pub const NR: usize = 16;
/// Depth of one packed block.
pub const KC: usize = 256;
/// Rows of A packed per block (a multiple of MR).
pub const MC: usize = 72;
/// Most columns of B packed per block (a multiple of NR).
pub const NC_MAX: usize = 4096;

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

/// Floats of scratch one product of `n` columns needs for `tasks` tasks.
pub fn scratch_len(n: usize, tasks: usize) -> usize {
    KC * nc(n) + tasks.max(1) * MC * KC
}

fn nc(n: usize) -> usize {
    n.next_multiple_of(NR).min(NC_MAX)
}

/// Computes `C = A·B` (`m×k` times `k×n`), overwriting `C`.
///
/// # Safety
/// Every element addressed through the three `Mat`s must be valid (A, B readable, C writable
/// and not overlapping A or B); `scratch` must hold [`scratch_len`]`(n, tasks)` floats not used
/// by anyone else during the call.
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
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: C[i, j] is writable per the contract.
                unsafe { *c.ptr.get().offset(i as isize * c.rs + j as isize * c.cs) = 0.0 };
            }
        }
        return;
    }
    let ncb = nc(n);
    let bp = scratch;
    // SAFETY: the A-packing areas follow the B panel area inside `scratch`.
    let ap_base = Ptr(unsafe { scratch.get().add(KC * ncb) });
    let fma = has_fma();
    for jc in (0..n).step_by(ncb) {
        let nb = ncb.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kb = KC.min(k - pc);
            // SAFETY: B block inside B; bp holds KC·ncb floats.
            unsafe { pack_b(b, pc, jc, kb, nb, bp.get()) };
            let blocks = m.div_ceil(MC);
            let min_blocks = if m * nb * kb < (1 << 17) { blocks } else { 1 };
            split(blocks, tasks, min_blocks, |task, range| {
                // SAFETY: each task owns its MC·KC A-packing area and writes its own rows of C.
                unsafe {
                    let ap = ap_base.get().add(task * MC * KC);
                    for blk in range {
                        let ic = blk * MC;
                        let mb = MC.min(m - ic);
                        pack_a(a, ic, pc, mb, kb, ap);
                        macro_tile(mb, nb, kb, ap, bp.get(), c, ic, jc, pc > 0, fma);
                    }
                }
            });
        }
    }
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Packs `B[pc..pc+kb, jc..jc+nb]` into panels of NR columns: `dst[panel][p][j]`, zero-padded.
unsafe fn pack_b(b: Mat, pc: usize, jc: usize, kb: usize, nb: usize, dst: *mut f32) {
    // SAFETY: per the caller's contract.
    unsafe {
        let mut d = dst;
        for j0 in (0..nb).step_by(NR) {
            let w = NR.min(nb - j0);
            for p in 0..kb {
                let row = b
                    .ptr
                    .get()
                    .offset((pc + p) as isize * b.rs + (jc + j0) as isize * b.cs);
                if b.cs == 1 && w == NR {
                    std::ptr::copy_nonoverlapping(row, d, NR);
                } else {
                    for j in 0..NR {
                        *d.add(j) = if j < w {
                            *row.offset(j as isize * b.cs)
                        } else {
                            0.0
                        };
                    }
                }
                d = d.add(NR);
            }
        }
    }
}

/// Packs `A[ic..ic+mb, pc..pc+kb]` into panels of MR rows: `dst[panel][p][i]`, zero-padded.
unsafe fn pack_a(a: Mat, ic: usize, pc: usize, mb: usize, kb: usize, dst: *mut f32) {
    // SAFETY: per the caller's contract.
    unsafe {
        let mut d = dst;
        for i0 in (0..mb).step_by(MR) {
            let h = MR.min(mb - i0);
            let base = a
                .ptr
                .get()
                .offset((ic + i0) as isize * a.rs + pc as isize * a.cs);
            for p in 0..kb {
                let col = base.offset(p as isize * a.cs);
                for i in 0..MR {
                    *d.add(i) = if i < h {
                        *col.offset(i as isize * a.rs)
                    } else {
                        0.0
                    };
                }
                d = d.add(MR);
            }
        }
    }
}

/// Multiplies one packed `mb×kb` A block by one packed `kb×nb` B block into C.
#[allow(clippy::too_many_arguments)]
unsafe fn macro_tile(
    mb: usize,
    nb: usize,
    kb: usize,
    ap: *const f32,
    bp: *const f32,
    c: Mat,
    ic: usize,
    jc: usize,
    acc: bool,
    fma: bool,
) {
    let mut tile = [0f32; MR * NR];
    for (jp, j0) in (0..nb).step_by(NR).enumerate() {
        let w = NR.min(nb - j0);
        for (ip, i0) in (0..mb).step_by(MR).enumerate() {
            let h = MR.min(mb - i0);
            // SAFETY: panel offsets stay inside the packed blocks.
            unsafe {
                let a = ap.add(ip * MR * kb);
                let b = bp.add(jp * NR * kb);
                micro(kb, a, b, &mut tile, fma);
                let cbase = c
                    .ptr
                    .get()
                    .offset((ic + i0) as isize * c.rs + (jc + j0) as isize * c.cs);
                for i in 0..h {
                    let crow = cbase.offset(i as isize * c.rs);
                    let t = &tile[i * NR..i * NR + w];
                    if c.cs == 1 {
                        let dst = std::slice::from_raw_parts_mut(crow, w);
                        if acc {
                            dst.iter_mut().zip(t).for_each(|(d, &v)| *d += v);
                        } else {
                            dst.copy_from_slice(t);
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

/// `tile = Σ_p a[p][0..MR]ᵀ · b[p][0..NR]` over `kc` packed steps.
unsafe fn micro(kc: usize, a: *const f32, b: *const f32, tile: &mut [f32; MR * NR], fma: bool) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: the CPU has AVX2 and FMA (checked by the caller); pointers per the contract.
        return unsafe { micro_avx2(kc, a, b, tile) };
    }
    let _ = fma;
    let mut acc = [[0f32; NR]; MR];
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
                acc[i][j] += ar[i] * br[j];
            }
        }
    }
    for i in 0..MR {
        tile[i * NR..(i + 1) * NR].copy_from_slice(&acc[i]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, a: *const f32, b: *const f32, tile: &mut [f32; MR * NR]) {
    use std::arch::x86_64::*;
    // SAFETY: the packed panels hold kc·MR and kc·NR floats; unaligned loads/stores only.
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
        for i in 0..MR {
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), c[2 * i]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), c[2 * i + 1]);
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
                    let mut scratch = vec![0f32; scratch_len(n, tasks)];
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
        let mut scratch = vec![0f32; scratch_len(n, tasks)];
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
