//! What a generator hands the host: the Program, its weight files, and the layout of every
//! input and output slot.

use std::ops::Range;

use ane_mil::{DType, Program};

use super::{KernelError, Matrix};

/// The smallest surface allocation the Neural Engine evaluates with (rule 1), bytes.
const MIN_SURFACE_BYTES: usize = 49_152;

/// A generated kernel.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    /// The MIL program (`main`).
    pub program: Program,
    /// BLOBFILE files: (path as written in the MIL, e.g. `@model_path/weights/mask.bin`, bytes).
    pub weights: Vec<(String, Vec<u8>)>,
    /// The function parameters, in declaration order (= byte-wise name order).
    pub inputs: Vec<InputSlot>,
    /// The returned values (always one, `out`).
    pub outputs: Vec<OutputSlot>,
    /// Element dtype of every input and output.
    pub dtype: DType,
}

impl KernelSpec {
    /// One allocation size for all input surfaces of a request (rule 2): the largest input's
    /// data size, at least 49,152 bytes (rule 1).
    pub fn input_alloc_bytes(&self) -> usize {
        self.alloc(self.inputs.iter().map(|s| s.shape))
    }

    /// One allocation size for all output surfaces of a request (rules 1 and 3).
    pub fn output_alloc_bytes(&self) -> usize {
        self.alloc(self.outputs.iter().map(|s| s.shape))
    }

    fn alloc(&self, shapes: impl Iterator<Item = [usize; 4]>) -> usize {
        let size = self.dtype.size_bytes().unwrap_or(4);
        shapes
            .map(|s| s.iter().product::<usize>() * size)
            .max()
            .unwrap_or(0)
            .max(MIN_SURFACE_BYTES)
    }

    /// The input slot named `name`.
    pub fn input(&self, name: &str) -> Option<&InputSlot> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The input slot holding block `block`.
    pub fn input_with_block(&self, block: &str) -> Option<&InputSlot> {
        self.inputs
            .iter()
            .find(|s| s.blocks.iter().any(|b| b.name == block))
    }
}

/// One function parameter `[1, C, 1, W]` and the blocks it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSlot {
    /// MIL parameter name.
    pub name: String,
    /// `[1, C, 1, W]`.
    pub shape: [usize; 4],
    /// The blocks tiling the slot (channel range × column range each).
    pub blocks: Vec<Block>,
}

/// A rectangular block of an input slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// `xnorm`, `wqt`, …
    pub name: String,
    /// Channels (rows) of the slot it covers.
    pub channels: Range<usize>,
    /// Spatial columns of the slot it covers.
    pub columns: Range<usize>,
    /// What the host writes there.
    pub content: BlockContent,
}

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockContent {
    /// A channel-first activation `[channels, columns]`.
    Activation,
    /// A weight matrix: `W [out, in]` as stored (`transposed == false`, rows = out) or `Wᵀ`
    /// (`transposed == true`, rows = in).
    Weight {
        /// Which matrix.
        matrix: Matrix,
        /// Whether the block holds `Wᵀ`.
        transposed: bool,
    },
}

impl InputSlot {
    /// Number of elements (`C · W`).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the slot has no elements (never for a generated kernel).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block named `name`.
    pub fn block(&self, name: &str) -> Result<&Block, KernelError> {
        self.blocks
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| KernelError::NoSuchBlock {
                slot: self.name.clone(),
                name: name.into(),
            })
    }

    /// Writes block `name` of this slot into `dst` (the whole slot, `C·W` row-major values).
    /// `src` is the block's activation `[channels, columns]` channel-first, or for a weight
    /// block the matrix in PyTorch `[out, in]` layout — it is transposed here when the block
    /// holds `Wᵀ`.
    pub fn write_block(&self, dst: &mut [f32], name: &str, src: &[f32]) -> Result<(), KernelError> {
        let b = self.block(name)?;
        if dst.len() != self.len() {
            return Err(KernelError::Length {
                name: self.name.clone(),
                got: dst.len(),
                expected: self.len(),
            });
        }
        let (rows, cols) = (b.channels.len(), b.columns.len());
        if src.len() != rows * cols {
            return Err(KernelError::Length {
                name: name.into(),
                got: src.len(),
                expected: rows * cols,
            });
        }
        let width = self.shape[3];
        let transposed = matches!(
            b.content,
            BlockContent::Weight {
                transposed: true,
                ..
            }
        );
        for r in 0..rows {
            let row = &mut dst[(b.channels.start + r) * width..][b.columns.clone()];
            if transposed {
                // src is [cols, rows] (W [out, in] with in = rows).
                for (c, v) in row.iter_mut().enumerate() {
                    *v = src[c * rows + r];
                }
            } else {
                row.copy_from_slice(&src[r * cols..(r + 1) * cols]);
            }
        }
        Ok(())
    }
}

/// One returned value `[1, C, 1, S]`: channel blocks concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSlot {
    /// MIL name of the returned variable.
    pub name: String,
    /// `[1, C, 1, S]`.
    pub shape: [usize; 4],
    /// The results, in channel order.
    pub parts: Vec<OutputPart>,
}

/// A named channel range of an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPart {
    /// `attn_out`, `q_rope`, …
    pub name: String,
    /// Channels of the output it covers.
    pub channels: Range<usize>,
}

impl OutputSlot {
    /// The channel range of part `name`.
    pub fn part(&self, name: &str) -> Result<Range<usize>, KernelError> {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.channels.clone())
            .ok_or_else(|| KernelError::NoSuchBlock {
                slot: self.name.clone(),
                name: name.into(),
            })
    }

    /// Part `name` of `src` (the whole output, `C·S` values): a `[channels, S]` slice.
    pub fn read_part<'a>(&self, src: &'a [f32], name: &str) -> Result<&'a [f32], KernelError> {
        let ch = self.part(name)?;
        let s = self.shape[3];
        let want = self.shape.iter().product::<usize>();
        if src.len() != want {
            return Err(KernelError::Length {
                name: self.name.clone(),
                got: src.len(),
                expected: want,
            });
        }
        Ok(&src[ch.start * s..ch.end * s])
    }
}
