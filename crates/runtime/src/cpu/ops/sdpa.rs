//! Scaled dot-product attention: `out = softmax(q·kᵀ/√E + mask)·v` over the last two dims,
//! batched over the leading dims. `q [.., L, E]`, `k [.., S, E]`, `v [.., S, Ev]`, optional
//! additive mask broadcast to `[.., L, S]` (a bool mask adds -∞ where false).

use super::super::exec::{split, BufId, Ctx, Ptr};
use super::super::sgemm::{scratch_len, sgemm, Mat};
use super::math::exp_f32;

/// An attention mask: buffer and offset, batch strides, and row/column strides of `[L, S]`.
pub type MaskView = ((BufId, usize), Vec<isize>, (isize, isize));

/// An attention step over strided q/k/v (and mask), writing a contiguous output.
#[derive(Debug, Clone, PartialEq)]
pub struct Sdpa {
    /// q, k, v buffers and offsets.
    pub qkv: [(BufId, usize); 3],
    /// Batch shape (all dims but the last two).
    pub batch: Vec<usize>,
    /// Batch strides of q, k, v, out.
    pub batch_strides: [Vec<isize>; 4],
    /// Row and column strides of q `[L, E]`, k `[S, E]`, v `[S, Ev]`.
    pub mat_strides: [(isize, isize); 3],
    /// Mask buffer, offset, batch strides and row/col strides, if any.
    pub mask: Option<MaskView>,
    /// True for a bool mask (0 → -∞), false for an additive one.
    pub bool_mask: bool,
    /// Output buffer (from its start).
    pub out: BufId,
    /// `L`, `S`, `E`, `Ev`.
    pub dims: [usize; 4],
}

impl Sdpa {
    /// Scratch per task: one `[L, S]` score matrix.
    pub fn scratch(&self) -> usize {
        let [l, s, _, ev] = self.dims;
        (l * s).next_multiple_of(16) + scratch_len(l, s.max(ev), 1)
    }

    /// Runs every batch.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let [l, s, e, ev] = self.dims;
        let nb: usize = self.batch.iter().product();
        let base = |i: usize| Ptr(ctx.buf_ptr(self.qkv[i].0).wrapping_add(self.qkv[i].1));
        let (q, k, v) = (base(0), base(1), base(2));
        let out = Ptr(ctx.buf_ptr(self.out));
        let mask = self
            .mask
            .as_ref()
            .map(|((b, o), bs, rc)| (Ptr(ctx.buf_ptr(*b).wrapping_add(*o)), bs, *rc));
        let scale = 1.0 / (e as f32).sqrt();
        split(nb, ctx.tasks, 1, |task, range| {
            let sc = ctx.scratch(task);
            for b in range {
                let mut offs = [0isize; 5];
                let mut rem = b;
                for d in (0..self.batch.len()).rev() {
                    let i = (rem % self.batch[d]) as isize;
                    rem /= self.batch[d];
                    for (t, o) in offs.iter_mut().take(4).enumerate() {
                        *o += i * self.batch_strides[t][d];
                    }
                    if let Some((_, bs, _)) = &mask {
                        offs[4] += i * bs[d];
                    }
                }
                let [(qr, qc), (kr, kc), (vr, vc)] = self.mat_strides;
                // SAFETY: offsets and strides come from views inside their buffers; `sc` is
                // this task's scratch of L·S floats; batch b writes its own output block.
                unsafe {
                    let pack = Ptr(sc.add((l * s).next_multiple_of(16)));
                    sgemm(
                        l,
                        s,
                        e,
                        Mat {
                            ptr: Ptr(q.get().offset(offs[0])),
                            rs: qr,
                            cs: qc,
                        },
                        Mat {
                            ptr: Ptr(k.get().offset(offs[1])),
                            rs: kc,
                            cs: kr,
                        },
                        Mat {
                            ptr: Ptr(sc),
                            rs: s as isize,
                            cs: 1,
                        },
                        pack,
                        1,
                    );
                    let scores = std::slice::from_raw_parts_mut(sc, l * s);
                    scores.iter_mut().for_each(|x| *x *= scale);
                    if let Some((m, _, (mr, mc))) = &mask {
                        let mp = m.get().offset(offs[4]);
                        for i in 0..l {
                            for j in 0..s {
                                let mv = *mp.offset(i as isize * mr + j as isize * mc);
                                let add = if self.bool_mask {
                                    if mv != 0.0 {
                                        0.0
                                    } else {
                                        f32::NEG_INFINITY
                                    }
                                } else {
                                    mv
                                };
                                scores[i * s + j] += add;
                            }
                        }
                    }
                    for row in scores.chunks_mut(s) {
                        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                        for x in row.iter_mut() {
                            *x = exp_f32(*x - m);
                        }
                        let sum: f32 = row.iter().fold(0.0, |acc, &x| acc + x);
                        let r = 1.0 / sum;
                        row.iter_mut().for_each(|x| *x *= r);
                    }
                    sgemm(
                        l,
                        ev,
                        s,
                        Mat {
                            ptr: Ptr(sc),
                            rs: s as isize,
                            cs: 1,
                        },
                        Mat {
                            ptr: Ptr(v.get().offset(offs[2])),
                            rs: vr,
                            cs: vc,
                        },
                        Mat {
                            ptr: Ptr(out.get().offset(offs[3])),
                            rs: ev as isize,
                            cs: 1,
                        },
                        pack,
                        1,
                    );
                }
            }
        });
    }
}
