//! Strided copies between views of one shape (materialising a view, filling an output).

use super::super::exec::{row_offset, split, Ctx, Ptr, View};
use super::super::layout::coalesce;

/// Copies every element of `src` to the same index of `dst` (equal shapes; `dst` must not
/// overlap `src`).
pub fn strided_copy(ctx: &Ctx<'_>, src: &View, dst: &View) {
    let (shape, strides) = coalesce(&[&src.layout, &dst.layout]);
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
                    let ps = s.get().offset(row_offset(r, &shape, &strides[0]));
                    let pd = d.get().offset(row_offset(r, &shape, &strides[1]));
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
