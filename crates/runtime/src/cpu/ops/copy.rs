//! Strided copies between views of one shape (materialising a view, filling an output).

use super::super::exec::{row_offset, split, Ctx, Ptr, View};
use super::super::layout::{coalesce, coalesce_fixed, MAX_RANK};

/// Copies every element of `src` to the same index of `dst` (equal shapes; `dst` must not
/// overlap `src`). Allocates nothing for views of up to [`MAX_RANK`] dims.
pub fn strided_copy(ctx: &Ctx<'_>, src: &View, dst: &View) {
    let (mut shape, mut strides) = ([0usize; MAX_RANK], [[0isize; MAX_RANK]; 2]);
    match coalesce_fixed([&src.layout, &dst.layout], &mut shape, &mut strides) {
        Some(rank) => copy_walk(
            ctx,
            src,
            dst,
            &shape[..rank],
            [&strides[0][..rank], &strides[1][..rank]],
        ),
        None => {
            let (shape, strides) = coalesce(&[&src.layout, &dst.layout]);
            copy_walk(ctx, src, dst, &shape, [&strides[0], &strides[1]]);
        }
    }
}

/// The copy over a coalesced `shape` with the source's and destination's `strides`.
fn copy_walk(ctx: &Ctx<'_>, src: &View, dst: &View, shape: &[usize], strides: [&[isize]; 2]) {
    let last = shape.len() - 1;
    let inner = shape[last];
    let rows: usize = shape[..last].iter().product();
    let s = Ptr(ctx.ptr(src));
    let d = Ptr(ctx.ptr(dst));
    let (ss, ds) = (strides[0][last], strides[1][last]);
    split(
        rows,
        ctx.tasks,
        (64 * 1024 / inner.max(1)).max(1),
        |_, range| {
            for r in range {
                // SAFETY: both views lie inside their buffers; rows of different tasks write
                // disjoint destination elements.
                unsafe {
                    let ps = s.get().offset(row_offset(r, shape, strides[0]));
                    let pd = d.get().offset(row_offset(r, shape, strides[1]));
                    if ss == 1 && ds == 1 {
                        std::ptr::copy_nonoverlapping(ps, pd, inner);
                    } else {
                        for i in 0..inner as isize {
                            *pd.offset(i * ds) = *ps.offset(i * ss);
                        }
                    }
                }
            }
        },
    );
}
