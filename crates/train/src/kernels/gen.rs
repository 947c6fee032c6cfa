//! The machinery every generator shares: input slots per weight mode, the `linear` helper,
//! BLOBFILE constants (weights, causal mask, RoPE tables), head reshapes, RoPE, GQA tiling and
//! masked softmax attention probabilities.

use ane_mil::blob::BlobWriter;
use ane_mil::builder::FunctionBuilder;
use ane_mil::builder::Var;
use ane_mil::{DType, Dialect, Literal, Program, TensorType};
use ane_runtime::rules::padded_spatial_width;

use super::spec::{Block, BlockContent, InputSlot, KernelSpec, OutputPart, OutputSlot};
use super::{span, KernelDims, KernelError, KernelOptions, LayerWeights, Matrix, WeightMode};

/// The fp16 stand-in for −∞ in the causal mask.
const MASK_NEG: f32 = -65504.0;

/// The causal mask `[S, S]` row-major: 0 where key ≤ query (column ≤ row), else −65504.
pub fn causal_mask(seq: usize) -> Vec<f32> {
    (0..seq * seq)
        .map(|i| if i % seq <= i / seq { 0.0 } else { MASK_NEG })
        .collect()
}

/// RoPE tables `(cos, sin)`, each `[S, HD]` row-major, for interleaved pairs `(2i, 2i+1)`:
/// `cos[p, 2i] = cos[p, 2i+1] = cos(p · θ^(−2i/HD))`, likewise `sin`.
/// Reference: Su et al., RoFormer (arXiv 2104.09864); llama2.c's pair convention.
pub fn rope_tables(seq: usize, head_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(seq * head_dim);
    let mut sin = Vec::with_capacity(seq * head_dim);
    for p in 0..seq {
        for d in 0..head_dim {
            let i = (d / 2) as f64;
            let freq = (theta as f64).powf(-2.0 * i / head_dim as f64);
            let a = p as f64 * freq;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// How a kernel uses one weight matrix: the map it applies (`W` or `Wᵀ`) and the orientation
/// of the block the host stores (`W` or `Wᵀ`, whichever has the input's channel count rows).
#[derive(Debug, Clone, Copy)]
pub(super) struct WeightUse {
    pub matrix: Matrix,
    /// The kernel computes `Wᵀ·x` (else `W·x`).
    pub map_transposed: bool,
    /// The block holds `Wᵀ` (else `W`).
    pub block_transposed: bool,
}

impl WeightUse {
    /// `y = W·x` from a block holding `Wᵀ` (forward kernels).
    pub fn fwd(matrix: Matrix) -> Self {
        WeightUse {
            matrix,
            map_transposed: false,
            block_transposed: true,
        }
    }

    /// `y = Wᵀ·x` from a block holding `W` (backward kernels).
    pub fn bwd(matrix: Matrix) -> Self {
        WeightUse {
            matrix,
            map_transposed: true,
            block_transposed: false,
        }
    }

    /// `y = W·x` from a block holding `W` as stored.
    pub fn fwd_as_stored(matrix: Matrix) -> Self {
        WeightUse {
            matrix,
            map_transposed: false,
            block_transposed: false,
        }
    }

    fn block_name(&self) -> String {
        let t = if self.block_transposed { "t" } else { "" };
        format!("{}{t}", self.matrix.name())
    }

    /// `(out, in)` of the map applied.
    fn map_shape(&self, dims: &KernelDims) -> (usize, usize) {
        let (o, i) = dims.matrix_shape(self.matrix);
        if self.map_transposed {
            (i, o)
        } else {
            (o, i)
        }
    }
}

/// A weight ready to apply: a baked conv weight or a `[1, 1, R, C]` matrix.
#[derive(Debug, Clone, Copy)]
pub(super) enum Linear {
    /// `conv` weight `[OUT, IN, 1, 1]`.
    Conv { w: Var },
    /// `matmul(w, x, transpose_x)` with `w [1, 1, R, C]`.
    Mat {
        w: Var,
        transpose_x: bool,
        out: usize,
    },
}

/// One kernel under construction.
pub(super) struct Gen<'w> {
    kernel: &'static str,
    pub dims: KernelDims,
    pub opts: KernelOptions,
    mode: WeightMode,
    weights: Option<LayerWeights<'w>>,
    pub f: FunctionBuilder,
    files: Vec<(String, Vec<u8>)>,
    inputs: Vec<InputSlot>,
    mask: Option<Var>,
    rope: Option<(Var, Var)>,
}

/// A dim as an int32 shape entry (dims are validated to fit).
pub(super) fn i(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl<'w> Gen<'w> {
    pub fn new(
        kernel: &'static str,
        dims: &KernelDims,
        opts: &KernelOptions,
        mode: WeightMode,
        weights: Option<&LayerWeights<'w>>,
    ) -> Result<Self, KernelError> {
        dims.validate()?;
        opts.validate()?;
        Ok(Gen {
            kernel,
            dims: *dims,
            opts: *opts,
            mode,
            weights: weights.copied(),
            f: FunctionBuilder::new("main"),
            files: Vec::new(),
            inputs: Vec::new(),
            mask: None,
            rope: None,
        })
    }

    /// A scalar literal of the kernel's dtype.
    pub fn lit(&self, v: f32) -> Literal {
        match self.opts.dtype {
            DType::Fp32 => Literal::fp32(v),
            _ => Literal::fp16(v),
        }
    }

    /// A tensor type of the kernel's dtype.
    pub fn ty(&self, shape: impl Into<Vec<usize>>) -> TensorType {
        TensorType::new(self.opts.dtype, shape)
    }

    /// Declares the inputs of a kernel whose activations (`acts`, each `[C, S]`) sit side by
    /// side along the spatial axis and whose weights are `weights` (blocks of `C` rows).
    /// Returns the activation variables `[1, C, 1, S]` and the weights ready for [`Self::linear`].
    pub fn inputs_spatial(
        &mut self,
        channels: usize,
        acts: &[&str],
        weights: &[WeightUse],
    ) -> Result<(Vec<Var>, Vec<Linear>), KernelError> {
        let s = self.dims.seq;
        let act_cols = acts.len() * s;
        let mut blocks: Vec<Block> = acts
            .iter()
            .enumerate()
            .map(|(k, name)| Block {
                name: (*name).into(),
                channels: 0..channels,
                columns: span(k * s, s),
                content: BlockContent::Activation,
            })
            .collect();
        // As-stored Params weights: each block is `W [out, in]` whatever the input's channels.
        let as_stored = self.mode == WeightMode::Params && self.opts.weights_as_stored;
        let weights: Vec<WeightUse> = weights
            .iter()
            .map(|w| WeightUse {
                block_transposed: w.block_transposed && !as_stored,
                ..*w
            })
            .collect();
        let weights = &weights[..];
        // Weight block shapes (rows must be the input's channel count, except as stored).
        let mut wcols = Vec::with_capacity(weights.len());
        let mut wrows = Vec::with_capacity(weights.len());
        for w in weights {
            let (o, n) = self.dims.matrix_shape(w.matrix);
            let (rows, cols) = if w.block_transposed { (n, o) } else { (o, n) };
            wrows.push(rows);
            if rows != channels && !as_stored {
                return Err(KernelError::Dims(format!(
                    "block {} has {rows} rows, the input has {channels} channels",
                    w.block_name()
                )));
            }
            wcols.push(cols);
        }
        // Packed: activations and weight blocks side by side, the width padded for rule 5
        // (the padding columns are never read).
        let x_cols = match self.mode {
            WeightMode::Packed => padded_spatial_width(act_cols + wcols.iter().sum::<usize>()),
            _ => act_cols,
        };
        let x_name = if self.mode == WeightMode::Params && !weights.is_empty() {
            "a_x"
        } else {
            "x"
        };
        if self.mode == WeightMode::Packed {
            let mut col = act_cols;
            for (w, &cols) in weights.iter().zip(&wcols) {
                blocks.push(self.weight_block(w, channels, span(col, cols)));
                col += cols;
            }
        }
        let x = self.f.input(x_name, self.ty([1, channels, 1, x_cols]))?;
        self.inputs.push(InputSlot {
            name: x_name.into(),
            shape: [1, channels, 1, x_cols],
            blocks,
        });
        let (c, s_) = (i(channels), i(s));
        let mut act_vars = Vec::with_capacity(acts.len());
        for (k, name) in acts.iter().enumerate() {
            if x_cols == s {
                act_vars.push(x);
            } else {
                let begin = [0, 0, 0, i(k * s)];
                act_vars.push(self.f.slice_by_size(name, x, &begin, &[1, c, 1, s_])?);
            }
        }
        let mut lins = Vec::with_capacity(weights.len());
        let mut col = act_cols;
        for (k, ((w, &cols), &rows)) in weights.iter().zip(&wcols).zip(&wrows).enumerate() {
            let name = w.block_name();
            let (out, inp) = w.map_shape(&self.dims);
            let transpose_x = w.map_transposed != w.block_transposed;
            let lin = match self.mode {
                WeightMode::Baked => {
                    let vals = self.baked_values(w)?;
                    let wv = self.blob(&name, &[out, inp, 1, 1], &vals)?;
                    Linear::Conv { w: wv }
                }
                WeightMode::Packed => {
                    let sl = self.f.slice_by_size(
                        &format!("{name}_s"),
                        x,
                        &[0, 0, 0, i(col)],
                        &[1, c, 1, i(cols)],
                    )?;
                    col += cols;
                    let wv = self.f.reshape(&name, sl, &[1, 1, c, i(cols)])?;
                    Linear::Mat {
                        w: wv,
                        transpose_x,
                        out,
                    }
                }
                WeightMode::Params => {
                    let letter = char::from(b'b' + (k % 25) as u8);
                    let pname = format!("{letter}_{name}");
                    // A block narrower than rule 5 allows (e.g. an FFN width of 172) sits in
                    // a wider input whose extra columns are sliced off.
                    // As stored: exactly `[1, rows, 1, cols]`, no padding.
                    let width = if as_stored {
                        cols
                    } else {
                        padded_spatial_width(cols)
                    };
                    let mut p = self.f.input(&pname, self.ty([1, rows, 1, width]))?;
                    let block = self.weight_block(w, rows, 0..cols);
                    self.inputs.push(InputSlot {
                        name: pname,
                        shape: [1, rows, 1, width],
                        blocks: vec![block],
                    });
                    let r = i(rows);
                    if width != cols {
                        p = self.f.slice_by_size(
                            &format!("{name}_s"),
                            p,
                            &[0, 0, 0, 0],
                            &[1, r, 1, i(cols)],
                        )?;
                    }
                    let wv = self.f.reshape(&name, p, &[1, 1, r, i(cols)])?;
                    Linear::Mat {
                        w: wv,
                        transpose_x,
                        out,
                    }
                }
            };
            lins.push(lin);
        }
        Ok((act_vars, lins))
    }

    fn weight_block(
        &self,
        w: &WeightUse,
        channels: usize,
        columns: std::ops::Range<usize>,
    ) -> Block {
        Block {
            name: w.block_name(),
            channels: 0..channels,
            columns,
            content: BlockContent::Weight {
                matrix: w.matrix,
                transposed: w.block_transposed,
            },
        }
    }

    /// The map `w` applies, `[OUT, IN]` row-major, from the Baked weight values.
    fn baked_values(&self, w: &WeightUse) -> Result<Vec<f32>, KernelError> {
        let all = self.weights.ok_or(KernelError::MissingWeights {
            kernel: self.kernel,
        })?;
        let vals = all.get(w.matrix);
        let (o, n) = self.dims.matrix_shape(w.matrix);
        if vals.len() != o * n {
            return Err(KernelError::Length {
                name: w.matrix.name().into(),
                got: vals.len(),
                expected: o * n,
            });
        }
        if !w.map_transposed {
            return Ok(vals.to_vec());
        }
        let mut t = vec![0.0; vals.len()];
        for r in 0..o {
            for c in 0..n {
                t[c * o + r] = vals[r * n + c];
            }
        }
        Ok(t)
    }

    /// Declares one input `x [1, ΣC, 1, S]` made of the channel blocks `blocks` (name, C) and
    /// returns each block as a `[1, C, 1, S]` variable.
    pub fn inputs_channels(&mut self, blocks: &[(&str, usize)]) -> Result<Vec<Var>, KernelError> {
        let s = self.dims.seq;
        let total: usize = blocks.iter().map(|b| b.1).sum();
        let x = self.f.input("x", self.ty([1, total, 1, s]))?;
        let mut slot = Vec::with_capacity(blocks.len());
        let mut vars = Vec::with_capacity(blocks.len());
        let mut ch = 0;
        for &(name, c) in blocks {
            slot.push(Block {
                name: name.into(),
                channels: span(ch, c),
                columns: 0..s,
                content: BlockContent::Activation,
            });
            let v = self
                .f
                .slice_by_size(name, x, &[0, i(ch), 0, 0], &[1, i(c), 1, i(s)])?;
            vars.push(v);
            ch += c;
        }
        self.inputs.push(InputSlot {
            name: "x".into(),
            shape: [1, total, 1, s],
            blocks: slot,
        });
        Ok(vars)
    }

    /// `name = W·x` for `x [1, IN, 1, S]`, giving `[1, OUT, 1, S]`.
    pub fn linear(&mut self, name: &str, w: Linear, x: Var) -> Result<Var, KernelError> {
        match w {
            Linear::Conv { w } => Ok(self.f.conv(name, x, w, 1)?),
            Linear::Mat {
                w,
                transpose_x,
                out,
            } => {
                let inp = self.f.ty(x)?.shape.get(1).copied().unwrap_or(0);
                let s = i(self.dims.seq);
                let xr = self
                    .f
                    .reshape(&format!("{name}_x"), x, &[1, 1, i(inp), s])?;
                let mm = self
                    .f
                    .matmul(&format!("{name}_mm"), w, xr, transpose_x, false)?;
                Ok(self.f.reshape(name, mm, &[1, i(out), 1, s])?)
            }
        }
    }

    /// A BLOBFILE constant `@model_path/weights/<name>.bin` of `shape` holding `values`
    /// (row-major) in the kernel's dtype.
    fn blob(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<Var, KernelError> {
        let mut w = BlobWriter::new();
        let offset = match self.opts.dtype {
            DType::Fp32 => w.add_f32(values),
            _ => w.add_f32_as_f16(values),
        };
        let path = format!("@model_path/weights/{name}.bin");
        let v = self
            .f
            .blob_constant(name, self.ty(shape.to_vec()), &path, offset)?;
        self.files.push((path, w.finish()));
        Ok(v)
    }

    /// The causal mask constant `[1, 1, S, S]` (made once).
    pub fn mask(&mut self) -> Result<Var, KernelError> {
        if let Some(m) = self.mask {
            return Ok(m);
        }
        let s = self.dims.seq;
        let m = self.blob("mask", &[1, 1, s, s], &causal_mask(s))?;
        self.mask = Some(m);
        Ok(m)
    }

    /// `[1, C, 1, S]` → heads `[1, n, S, HD]`.
    pub fn heads(&mut self, name: &str, x: Var, n: usize) -> Result<Var, KernelError> {
        let (hd, s) = (i(self.dims.head_dim), i(self.dims.seq));
        let r = self.f.reshape(&format!("{name}_r"), x, &[1, i(n), hd, s])?;
        Ok(self.f.transpose(name, r, &[0, 1, 3, 2])?)
    }

    /// Heads `[1, n, S, HD]` → `[1, n·HD, 1, S]`.
    pub fn unheads(&mut self, name: &str, x: Var, n: usize) -> Result<Var, KernelError> {
        let s = i(self.dims.seq);
        let t = self.f.transpose(&format!("{name}_t"), x, &[0, 1, 3, 2])?;
        Ok(self
            .f
            .reshape(name, t, &[1, i(n * self.dims.head_dim), 1, s])?)
    }

    /// RoPE on heads `x [1, n, S, HD]`: `x·cos + rot(x)·sin` with `rot(x)[2i] = −x[2i+1]`,
    /// `rot(x)[2i+1] = x[2i]`.
    pub fn rope(&mut self, name: &str, x: Var, n: usize) -> Result<Var, KernelError> {
        let (cos, sin) = match self.rope {
            Some(cs) => cs,
            None => {
                let (s, hd, w) = (self.dims.seq, self.dims.head_dim, self.dims.window);
                // Positions restart every window: the table of one window, repeated.
                let (c1, s1) = rope_tables(w, hd, self.opts.rope_theta);
                let (c, sn): (Vec<f32>, Vec<f32>) = (
                    c1.iter().copied().cycle().take(s * hd).collect(),
                    s1.iter().copied().cycle().take(s * hd).collect(),
                );
                let cv = self.blob("rope_cos", &[1, 1, s, hd], &c)?;
                let sv = self.blob("rope_sin", &[1, 1, s, hd], &sn)?;
                self.rope = Some((cv, sv));
                (cv, sv)
            }
        };
        let pairs = i(self.dims.seq * self.dims.head_dim / 2);
        let (n_, s, hd) = (i(n), i(self.dims.seq), i(self.dims.head_dim));
        let p = self
            .f
            .reshape(&format!("{name}_pairs"), x, &[1, n_, pairs, 2])?;
        let even = self.f.slice_by_size(
            &format!("{name}_even"),
            p,
            &[0, 0, 0, 0],
            &[1, n_, pairs, 1],
        )?;
        let odd =
            self.f
                .slice_by_size(&format!("{name}_odd"), p, &[0, 0, 0, 1], &[1, n_, pairs, 1])?;
        let m1 = self.lit(-1.0);
        let nodd = self.f.mul(&format!("{name}_nodd"), odd, m1)?;
        let rot = self
            .f
            .concat(&format!("{name}_rotp"), &[nodd, even], 3, false)?;
        let rot = self
            .f
            .reshape(&format!("{name}_rot"), rot, &[1, n_, s, hd])?;
        let a = self.f.mul(&format!("{name}_xc"), x, cos)?;
        let b = self.f.mul(&format!("{name}_rs"), rot, sin)?;
        Ok(self.f.add(name, a, b)?)
    }

    /// GQA broadcast of KV heads `[1, NKV, S, HD]` to `[1, NH, S, HD]`: query head `h` gets KV
    /// head `h / G` (see [`super::gqa_kv_head`]).
    pub fn gqa_tile(&mut self, name: &str, x: Var) -> Result<Var, KernelError> {
        let g = self.dims.group();
        if g == 1 {
            return Ok(x);
        }
        let d = &self.dims;
        let (nkv, nh, s, hd) = (i(d.n_kv_heads), i(d.n_heads), i(d.seq), i(d.head_dim));
        let flat = self
            .f
            .reshape(&format!("{name}_f"), x, &[1, nkv, 1, s * hd])?;
        let copies = vec![flat; g];
        let rep = self.f.concat(&format!("{name}_rep"), &copies, 2, false)?;
        Ok(self.f.reshape(name, rep, &[1, nh, s, hd])?)
    }

    /// Causal attention probabilities `softmax(q·kᵀ/√HD + mask)` over the key axis, for
    /// `q, k [1, NH, S, HD]`; `[1, NH, S(query), S(key)]`.
    pub fn attention_probs(&mut self, name: &str, q: Var, k: Var) -> Result<Var, KernelError> {
        let scores = self
            .f
            .matmul(&format!("{name}_scores"), q, k, false, true)?;
        let scale = self.lit(1.0 / (self.dims.head_dim as f32).sqrt());
        let scaled = self.f.mul(&format!("{name}_scaled"), scores, scale)?;
        let mask = self.mask()?;
        let masked = self.f.add(&format!("{name}_masked"), scaled, mask)?;
        Ok(self.f.softmax(name, masked, -1)?)
    }

    /// Finishes the kernel with one output: `parts` concatenated along channels as `out`, or
    /// the single part itself (which the caller named `out`).
    pub fn finish(mut self, parts: &[(&str, Var)]) -> Result<KernelSpec, KernelError> {
        let s = self.dims.seq;
        let mut out_parts = Vec::with_capacity(parts.len());
        let mut ch = 0;
        for &(name, v) in parts {
            let c = self.f.ty(v)?.shape.get(1).copied().unwrap_or(0);
            out_parts.push(OutputPart {
                name: name.into(),
                channels: span(ch, c),
            });
            ch += c;
        }
        let out = match parts {
            [(_, v)] => *v,
            _ => {
                let vars: Vec<Var> = parts.iter().map(|p| p.1).collect();
                self.f.concat("out", &vars, 1, false)?
            }
        };
        let out_name = self.f.name_of(out)?.to_string();
        let function = self.f.finish(&[out])?;
        Ok(KernelSpec {
            program: Program::new(Dialect::Ios18, function),
            weights: self.files,
            inputs: self.inputs,
            outputs: vec![OutputSlot {
                name: out_name,
                shape: [1, ch, 1, s],
                parts: out_parts,
            }],
            dtype: self.opts.dtype,
        })
    }
}
