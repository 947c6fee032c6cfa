//! Strided views of a flat f32 buffer: shape + strides (in elements) + offset.
//!
//! Reshape, transpose, slice and broadcast become new Layouts over the same buffer wherever the
//! strides allow, so the CPU executor never copies for them.

/// A strided view. `strides[d]` counts elements (not bytes) and may be 0 (broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Dims, outermost first.
    pub shape: Vec<usize>,
    /// Element stride of each dim.
    pub strides: Vec<isize>,
    /// Element offset of index `[0, 0, ...]` in the buffer.
    pub offset: usize,
}

impl Layout {
    /// Row-major contiguous layout of `shape` at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        let mut strides = vec![0isize; shape.len()];
        let mut s = 1isize;
        for d in (0..shape.len()).rev() {
            strides[d] = s;
            s *= shape[d] as isize;
        }
        Layout {
            shape: shape.to_vec(),
            strides,
            offset: 0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the elements are row-major and dense from `offset` (size-1 dims ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1isize;
        for d in (0..self.shape.len()).rev() {
            if self.shape[d] == 1 {
                continue;
            }
            if self.strides[d] != expect {
                return false;
            }
            expect *= self.shape[d] as isize;
        }
        true
    }

    /// The view with dims permuted by `perm` (a permutation of `0..rank`).
    pub fn transpose(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    /// The sub-view starting at `begin` with `size` elements per dim (all in bounds).
    pub fn slice(&self, begin: &[usize], size: &[usize]) -> Layout {
        let delta: isize = begin
            .iter()
            .zip(&self.strides)
            .map(|(&b, &s)| b as isize * s)
            .sum();
        Layout {
            shape: size.to_vec(),
            strides: self.strides.clone(),
            offset: (self.offset as isize + delta) as usize,
        }
    }

    /// The view broadcast to `shape` (NumPy rules, aligned on the right), or `None`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<Layout> {
        if shape.len() < self.shape.len() {
            return None;
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0isize; shape.len()];
        for (d, &n) in shape.iter().enumerate().skip(lead) {
            let (m, s) = (self.shape[d - lead], self.strides[d - lead]);
            strides[d] = match (m, n) {
                (a, b) if a == b => s,
                (1, _) => 0,
                _ => return None,
            };
        }
        Some(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// The same elements in row-major order viewed with `shape`, if the strides allow it
    /// without a copy.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if shape.iter().product::<usize>() != self.len() {
            return None;
        }
        if self.is_contiguous() {
            let mut l = Layout::contiguous(shape);
            l.offset = self.offset;
            return Some(l);
        }
        // Drop size-1 dims of the source, then match groups of old and new dims whose
        // products agree; each old group must be internally contiguous.
        let old: Vec<(usize, isize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(&n, _)| n != 1)
            .map(|(&n, &s)| (n, s))
            .collect();
        let mut strides = vec![0isize; shape.len()];
        let (mut oi, mut ni) = (0, 0);
        while ni < shape.len() {
            if shape[ni] == 1 {
                strides[ni] = 0;
                ni += 1;
                continue;
            }
            let (o0, n0) = (oi, ni);
            let (mut op, mut np) = (old.get(oi)?.0, shape[ni]);
            oi += 1;
            ni += 1;
            while op != np {
                if op < np {
                    op *= old.get(oi)?.0;
                    oi += 1;
                } else {
                    np *= *shape.get(ni)?;
                    ni += 1;
                }
            }
            for k in o0..oi - 1 {
                if old[k].1 != old[k + 1].1 * old[k + 1].0 as isize {
                    return None;
                }
            }
            let mut s = old[oi - 1].1;
            for k in (n0..ni).rev() {
                strides[k] = s;
                s *= shape[k] as isize;
            }
        }
        if oi != old.len() {
            return None;
        }
        Some(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }
}

/// Merges adjacent dims that every layout walks as one (and drops size-1 dims), so loops run
/// over as few, as long dims as possible. All layouts must share one shape. Returns the merged
/// shape and each layout's merged strides.
pub fn coalesce(layouts: &[&Layout]) -> (Vec<usize>, Vec<Vec<isize>>) {
    let shape = &layouts[0].shape;
    let keep: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] != 1).collect();
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<isize>> = vec![Vec::new(); layouts.len()];
    for &d in &keep {
        let merge = !out_shape.is_empty()
            && layouts.iter().enumerate().all(|(i, l)| {
                let prev = *out_strides[i].last().unwrap_or(&0);
                prev == l.strides[d] * shape[d] as isize
            });
        if merge {
            let last = out_shape.len() - 1;
            out_shape[last] *= shape[d];
            for (i, l) in layouts.iter().enumerate() {
                let k = out_strides[i].len() - 1;
                out_strides[i][k] = l.strides[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (i, l) in layouts.iter().enumerate() {
                out_strides[i].push(l.strides[d]);
            }
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for s in &mut out_strides {
            s.push(0);
        }
    }
    (out_shape, out_strides)
}

/// Most dims [`coalesce_fixed`] handles.
pub const MAX_RANK: usize = 8;

/// [`coalesce`] for `N` layouts into fixed arrays, allocating nothing (for evaluation-time
/// use): returns the merged rank, or `None` when the shape has more than [`MAX_RANK`] dims.
pub fn coalesce_fixed<const N: usize>(
    layouts: [&Layout; N],
    shape_out: &mut [usize; MAX_RANK],
    strides_out: &mut [[isize; MAX_RANK]; N],
) -> Option<usize> {
    let shape = &layouts[0].shape;
    if shape.len() > MAX_RANK {
        return None;
    }
    let mut rank = 0;
    for (d, &len) in shape.iter().enumerate() {
        if len == 1 {
            continue;
        }
        let merge = rank > 0
            && (0..N).all(|i| strides_out[i][rank - 1] == layouts[i].strides[d] * len as isize);
        if merge {
            shape_out[rank - 1] *= len;
            for i in 0..N {
                strides_out[i][rank - 1] = layouts[i].strides[d];
            }
        } else {
            shape_out[rank] = len;
            for i in 0..N {
                strides_out[i][rank] = layouts[i].strides[d];
            }
            rank += 1;
        }
    }
    if rank == 0 {
        shape_out[0] = 1;
        for s in strides_out.iter_mut() {
            s[0] = 0;
        }
        rank = 1;
    }
    Some(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_fixed_agrees_with_coalesce() {
        let a = Layout::contiguous(&[1, 4, 1, 8]);
        let b = Layout::contiguous(&[1, 4, 1, 1])
            .broadcast_to(&[1, 4, 1, 8])
            .unwrap();
        for pair in [[&a, &a], [&a, &b], [&b, &b]] {
            let (shape, strides) = coalesce(&pair);
            let (mut fs, mut fst) = ([0; MAX_RANK], [[0; MAX_RANK]; 2]);
            let rank = coalesce_fixed(pair, &mut fs, &mut fst).unwrap();
            assert_eq!(&fs[..rank], &shape[..]);
            assert_eq!(&fst[0][..rank], &strides[0][..]);
            assert_eq!(&fst[1][..rank], &strides[1][..]);
        }
        let deep = Layout::contiguous(&[2; MAX_RANK + 1]);
        let (mut fs, mut fst) = ([0; MAX_RANK], [[0; MAX_RANK]; 2]);
        assert!(coalesce_fixed([&deep, &deep], &mut fs, &mut fst).is_none());
    }

    /// Flat offsets of every element in row-major index order.
    fn offsets(l: &Layout) -> Vec<isize> {
        let n = l.len();
        let mut out = Vec::with_capacity(n);
        for flat in 0..n {
            let mut rem = flat;
            let mut off = l.offset as isize;
            for d in (0..l.shape.len()).rev() {
                off += (rem % l.shape[d]) as isize * l.strides[d];
                rem /= l.shape[d];
            }
            out.push(off);
        }
        out
    }

    #[test]
    fn reshape_of_transpose_only_when_a_view_exists() {
        let base = Layout::contiguous(&[2, 3, 4]);
        let t = base.transpose(&[0, 2, 1]); // [2,4,3]
        assert!(
            t.reshape(&[2, 12]).is_none(),
            "4x3 transposed block is not contiguous"
        );
        let r = t.reshape(&[2, 4, 3, 1]).unwrap();
        assert_eq!(offsets(&r), offsets(&t));
        let r2 = t.reshape(&[1, 2, 4, 1, 3]).unwrap();
        assert_eq!(offsets(&r2), offsets(&t));
        let s = base.slice(&[0, 1, 0], &[2, 2, 4]); // rows 1..3 of each block
        let rs = s.reshape(&[2, 8]).unwrap();
        assert_eq!(offsets(&rs), offsets(&s));
        assert!(s.reshape(&[16]).is_none());
    }

    #[test]
    fn coalesce_merges_dense_dims() {
        let a = Layout::contiguous(&[1, 4, 1, 8]);
        let b = Layout::contiguous(&[1, 4, 1, 1])
            .broadcast_to(&[1, 4, 1, 8])
            .unwrap();
        let (shape, strides) = coalesce(&[&a, &a]);
        assert_eq!(shape, vec![32]);
        assert_eq!(strides, vec![vec![1], vec![1]]);
        let (shape, strides) = coalesce(&[&a, &b]);
        assert_eq!(shape, vec![4, 8]);
        assert_eq!(strides, vec![vec![8, 1], vec![1, 0]]);
    }
}
