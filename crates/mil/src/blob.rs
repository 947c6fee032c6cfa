//! coremltools "MIL blob storage v2" weight files.
//!
//! A `BLOBFILE(path=…, offset=…)` constant in MIL text points into one of these files. All integers
//! are little-endian. A file is a 64-byte storage header followed by `count` records:
//!
//! | Offset (relative) | Size | Field | Value |
//! |---|---|---|---|
//! | 0  | 4  | header `count` | number of records, at least 1 |
//! | 4  | 4  | header `version` | 2 |
//! | 8  | 56 | reserved | zero |
//! | record + 0  | 4  | metadata `sentinel` | `0xDEADBEEF` |
//! | record + 4  | 4  | metadata `mil_dtype` | 1 fp16, 2 fp32, 3 uint8, 4 int8 |
//! | record + 8  | 8  | metadata `size_in_bytes` | payload length in bytes (full 64 bits) |
//! | record + 16 | 8  | metadata `data_offset` | absolute file offset of the payload (full 64 bits) |
//! | record + 24 | 40 | reserved | zero |
//! | data_offset | size_in_bytes | payload | elements, little-endian, row-major |
//!
//! The first record's metadata is at offset 64. Every record (metadata) and every payload starts at a
//! 64-byte aligned offset; the payload of a record is padded with zero bytes up to the next multiple
//! of 64, where the next record begins.
//!
//! **Offset convention.** The `offset=uint64(…)` in MIL is the file offset of a record's *metadata*,
//! not of its payload. With one blob per file that is always [`SINGLE_BLOB_OFFSET`] (64) and the
//! payload starts at 128. [`BlobWriter`] returns this metadata offset for every blob it adds and
//! [`BlobFile::get`] resolves it.
//!
//! **Tail padding.** [`BlobWriter`] does not pad the last payload, so a single-blob fp16 file of `n`
//! elements is exactly `128 + 2n` bytes, byte-identical to what upstream writes. [`BlobFile::parse`]
//! accepts a last payload that ends the file as well as one followed by zero padding up to the next
//! 64-byte boundary; anything else after the last record is an error.
//!
//! The reader is strict: every field is validated with checked arithmetic, and malformed input gives
//! a [`BlobError`] naming the offset, what was expected and what was found. It never panics.

use std::fmt;
use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Size of the storage header at the start of every blob file.
pub const HEADER_SIZE: u64 = 64;
/// Size of the metadata record that precedes every payload.
pub const METADATA_SIZE: u64 = 64;
/// Alignment of every record and payload.
pub const ALIGNMENT: u64 = 64;
/// Storage format version written and accepted.
pub const VERSION: u32 = 2;
/// Marker at the start of every metadata record.
pub const SENTINEL: u32 = 0xDEAD_BEEF;
/// `BLOBFILE` offset of the only blob in a one-blob-per-file weight file.
pub const SINGLE_BLOB_OFFSET: u64 = HEADER_SIZE;

/// Element type of a blob payload (the coremltools `mil_dtype` code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobDType {
    /// IEEE half precision, code 1.
    Fp16 = 1,
    /// IEEE single precision, code 2.
    Fp32 = 2,
    /// Unsigned 8-bit integer, code 3.
    UInt8 = 3,
    /// Signed 8-bit integer, code 4.
    Int8 = 4,
}

impl BlobDType {
    const ALL: [BlobDType; 4] = [Self::Fp16, Self::Fp32, Self::UInt8, Self::Int8];

    /// The `mil_dtype` code stored in the metadata record.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The dtype for a `mil_dtype` code, or `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Size of one element in bytes.
    pub const fn element_size(self) -> usize {
        match self {
            Self::Fp16 => 2,
            Self::Fp32 => 4,
            Self::UInt8 | Self::Int8 => 1,
        }
    }

    /// The MIL type name (`fp16`, `fp32`, `uint8`, `int8`).
    pub const fn mil_name(self) -> &'static str {
        ["fp16", "fp32", "uint8", "int8"][self as usize - 1]
    }
}

impl fmt::Display for BlobDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mil_name())
    }
}

/// Everything that can be wrong with a blob file or a lookup into one. Offsets are absolute file
/// offsets; `record` / `offset` of a record is the offset of its metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The file is shorter than the 64-byte storage header.
    #[error("blob file truncated: header needs 64 bytes, file has {len}")]
    TruncatedHeader {
        /// File length.
        len: u64,
    },
    /// The header version (offset 4) is not 2.
    #[error("unsupported blob storage version {version} at offset 4 (expected 2)")]
    UnsupportedVersion {
        /// Version found.
        version: u32,
    },
    /// A reserved byte of the storage header is not zero.
    #[error("blob file header: reserved byte at offset {offset} is 0x{value:02X} (expected 0)")]
    HeaderReservedNonZero {
        /// Offset of the first non-zero reserved byte.
        offset: u64,
        /// Its value.
        value: u8,
    },
    /// The header (offset 0) declares zero records.
    #[error("blob file header at offset 0 declares 0 blobs (expected at least 1)")]
    ZeroCount,
    /// The file ends before the metadata of a record declared by the header.
    #[error("blob file truncated: record {} of {count} at offset {offset} needs 64 bytes of metadata, file has {len} bytes", .index + 1)]
    TruncatedRecord {
        /// Zero-based index of the missing record.
        index: u32,
        /// Record count declared by the header.
        count: u32,
        /// Where the record's metadata should start.
        offset: u64,
        /// File length.
        len: u64,
    },
    /// A record starts right after the previous payload instead of at the next 64-byte boundary.
    #[error("blob record at offset {offset} is not 64-byte aligned (the previous payload must be zero-padded so the record starts at offset {})", align_up(*.offset))]
    MisalignedRecord {
        /// Where the unaligned record starts.
        offset: u64,
    },
    /// The metadata record does not start with `0xDEADBEEF`.
    #[error("blob record at offset {offset}: bad sentinel 0x{found:08X} (expected 0xDEADBEEF)")]
    BadSentinel {
        /// Record offset.
        offset: u64,
        /// Sentinel found.
        found: u32,
    },
    /// The `mil_dtype` code is not 1 (fp16), 2 (fp32), 3 (uint8) or 4 (int8).
    #[error("unsupported blob dtype code {code} at offset {offset} (expected 1 fp16, 2 fp32, 3 uint8 or 4 int8)")]
    UnknownDType {
        /// Record offset.
        offset: u64,
        /// Code found.
        code: u32,
    },
    /// A reserved byte of a metadata record is not zero.
    #[error("blob record at offset {record}: reserved byte at offset {offset} is 0x{value:02X} (expected 0)")]
    MetadataReservedNonZero {
        /// Record offset.
        record: u64,
        /// Offset of the first non-zero reserved byte.
        offset: u64,
        /// Its value.
        value: u8,
    },
    /// `size_in_bytes` is zero.
    #[error("blob record at offset {offset}: size_in_bytes is 0 (expected at least one element)")]
    EmptyBlob {
        /// Record offset.
        offset: u64,
    },
    /// `size_in_bytes` is not a multiple of the element size.
    #[error("blob record at offset {offset}: size_in_bytes {size} is not a multiple of the {dtype} element size {}", .dtype.element_size())]
    SizeNotMultiple {
        /// Record offset.
        offset: u64,
        /// Record dtype.
        dtype: BlobDType,
        /// `size_in_bytes` found.
        size: u64,
    },
    /// `data_offset` points before the end of the record's own metadata.
    #[error("blob record at offset {offset}: data offset {data_offset} points before the end of its metadata (expected at least {})", .offset + 64)]
    DataBeforeMetadataEnd {
        /// Record offset.
        offset: u64,
        /// `data_offset` found.
        data_offset: u64,
    },
    /// `data_offset` is not a multiple of 64.
    #[error("blob record at offset {offset}: data offset {data_offset} is not 64-byte aligned")]
    MisalignedData {
        /// Record offset.
        offset: u64,
        /// `data_offset` found.
        data_offset: u64,
    },
    /// The payload `data_offset .. data_offset + size` is not inside the file (or overflows u64).
    #[error("blob record at offset {offset}: payload of {size} bytes at data offset {data_offset} extends past the end of the file ({len} bytes)")]
    DataOutOfBounds {
        /// Record offset.
        offset: u64,
        /// `data_offset` found.
        data_offset: u64,
        /// `size_in_bytes` found.
        size: u64,
        /// File length.
        len: u64,
    },
    /// A padding byte (between metadata and payload, or between records) is not zero.
    #[error("blob file: padding byte at offset {offset} is 0x{value:02X} (expected 0)")]
    NonZeroPadding {
        /// Offset of the first non-zero padding byte.
        offset: u64,
        /// Its value.
        value: u8,
    },
    /// Something other than zero padding up to a 64-byte boundary follows the last record.
    #[error("blob file has {extra} unexpected trailing bytes at offset {offset} after the last of {count} record(s) declared by the header (only zero padding to a 64-byte boundary is allowed)")]
    TrailingBytes {
        /// Where the last payload ends.
        offset: u64,
        /// Bytes from there to the end of the file.
        extra: u64,
        /// Record count declared by the header.
        count: u32,
    },
    /// A looked-up offset is where a record's payload starts, not its metadata.
    #[error("no blob record starts at offset {offset}: that is the payload of the record at offset {record} (BLOBFILE offsets point at the metadata record)")]
    OffsetIsPayload {
        /// Offset looked up.
        offset: u64,
        /// The record whose payload starts there.
        record: u64,
    },
    /// A looked-up offset is not the start of any record.
    #[error("no blob record starts at offset {offset} (records start at {})", list_offsets(.starts))]
    NoRecordAt {
        /// Offset looked up.
        offset: u64,
        /// Offsets of all records in the file.
        starts: Vec<u64>,
    },
    /// A typed accessor was used on a record of another dtype.
    #[error("blob at offset {offset} holds {found}, expected {expected}")]
    DTypeMismatch {
        /// Record offset.
        offset: u64,
        /// What the accessor accepts, e.g. `"fp16 or fp32"`.
        expected: &'static str,
        /// Record dtype.
        found: BlobDType,
    },
    /// A typed accessor expected a different element count.
    #[error("blob at offset {offset} holds {bytes} bytes of {dtype} ({found} elements), expected {expected} elements")]
    LengthMismatch {
        /// Record offset.
        offset: u64,
        /// Record dtype.
        dtype: BlobDType,
        /// Payload size in bytes.
        bytes: u64,
        /// Element count of the record.
        found: u64,
        /// Element count asked for.
        expected: u64,
    },
}

fn list_offsets(starts: &[u64]) -> String {
    starts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Owned, typed payload of one blob.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobData {
    /// fp16 elements.
    Fp16(Vec<f16>),
    /// fp32 elements.
    Fp32(Vec<f32>),
    /// uint8 elements.
    UInt8(Vec<u8>),
    /// int8 elements.
    Int8(Vec<i8>),
}

impl BlobData {
    /// Decodes little-endian `bytes` (whose length must be a multiple of the element size).
    fn decode(dtype: BlobDType, bytes: &[u8]) -> Self {
        match dtype {
            BlobDType::Fp16 => Self::Fp16(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            BlobDType::Fp32 => Self::Fp32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            BlobDType::UInt8 => Self::UInt8(bytes.to_vec()),
            BlobDType::Int8 => Self::Int8(bytes.iter().map(|&b| b as i8).collect()),
        }
    }

    /// Element type of the payload.
    pub fn dtype(&self) -> BlobDType {
        match self {
            Self::Fp16(_) => BlobDType::Fp16,
            Self::Fp32(_) => BlobDType::Fp32,
            Self::UInt8(_) => BlobDType::UInt8,
            Self::Int8(_) => BlobDType::Int8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Fp16(v) => v.len(),
            Self::Fp32(v) => v.len(),
            Self::UInt8(v) => v.len(),
            Self::Int8(v) => v.len(),
        }
    }

    /// Whether the payload has no elements (such a payload cannot be written).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32` for fp16 (exact widening) and fp32 payloads, `None` for integers.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self {
            Self::Fp16(v) => Some(v.to_f32_vec()),
            Self::Fp32(v) => Some(v.clone()),
            Self::UInt8(_) | Self::Int8(_) => None,
        }
    }

    /// The payload as stored in the file (little-endian, no padding).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Self::Fp16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::UInt8(v) => v.clone(),
            Self::Int8(v) => v.iter().map(|&x| x as u8).collect(),
        }
    }
}

/// Builds a blob file. Every `add_*` returns the blob's `BLOBFILE` offset (its metadata offset).
///
/// Records follow each other from offset 64, each payload zero-padded to a multiple of 64 before
/// the next record; the last payload is not padded. The `add_*` methods panic on an empty slice
/// and [`finish`](Self::finish) panics if nothing was added: the format has no empty blobs or files.
///
/// ```
/// use ane_mil::blob::{BlobFile, BlobWriter};
/// let mut w = BlobWriter::new();
/// let wq = w.add_f32_as_f16(&[1.0, 2.0, 3.0]); // the offset to print in the MIL text
/// let wk = w.add_f32_as_f16(&[4.0; 40]);
/// assert_eq!((wq, wk), (64, 192));
/// let bytes = w.finish();
/// let file = BlobFile::parse(&bytes).unwrap();
/// assert_eq!(file.read_f32(wk, 40).unwrap(), vec![4.0; 40]);
/// ```
#[derive(Debug, Clone)]
pub struct BlobWriter {
    buf: Vec<u8>,
    count: u32,
}

impl Default for BlobWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BlobWriter {
    /// An empty writer (header only).
    pub fn new() -> Self {
        let mut buf = vec![0u8; HEADER_SIZE as usize];
        buf[4..8].copy_from_slice(&VERSION.to_le_bytes());
        BlobWriter { buf, count: 0 }
    }

    /// Number of blobs added so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Appends one record with payload `bytes` and returns its metadata offset.
    fn add_record(&mut self, dtype: BlobDType, len: usize, bytes: impl Iterator<Item = u8>) -> u64 {
        assert!(len > 0, "blob payloads must hold at least one element");
        let meta = self.buf.len().next_multiple_of(ALIGNMENT as usize);
        let size = (len * dtype.element_size()) as u64;
        self.buf.resize(meta, 0);
        self.buf.extend_from_slice(&SENTINEL.to_le_bytes());
        self.buf.extend_from_slice(&dtype.code().to_le_bytes());
        self.buf.extend_from_slice(&size.to_le_bytes());
        self.buf
            .extend_from_slice(&(meta as u64 + METADATA_SIZE).to_le_bytes());
        self.buf.resize(meta + METADATA_SIZE as usize, 0);
        self.buf.extend(bytes);
        debug_assert_eq!(self.buf.len() as u64, meta as u64 + METADATA_SIZE + size);
        self.count = self.count.checked_add(1).expect("more than u32::MAX blobs");
        meta as u64
    }

    /// Adds an fp16 blob.
    pub fn add_f16(&mut self, values: &[f16]) -> u64 {
        let bytes = values.iter().flat_map(|x| x.to_le_bytes());
        self.add_record(BlobDType::Fp16, values.len(), bytes)
    }

    /// Converts `values` to fp16 (round to nearest, ties to even) and adds an fp16 blob.
    pub fn add_f32_as_f16(&mut self, values: &[f32]) -> u64 {
        let mut half = vec![f16::ZERO; values.len()];
        half.convert_from_f32_slice(values);
        self.add_f16(&half)
    }

    /// Adds an fp32 blob.
    pub fn add_f32(&mut self, values: &[f32]) -> u64 {
        let bytes = values.iter().flat_map(|x| x.to_le_bytes());
        self.add_record(BlobDType::Fp32, values.len(), bytes)
    }

    /// Adds a uint8 blob.
    pub fn add_u8(&mut self, values: &[u8]) -> u64 {
        self.add_record(BlobDType::UInt8, values.len(), values.iter().copied())
    }

    /// Adds an int8 blob.
    pub fn add_i8(&mut self, values: &[i8]) -> u64 {
        self.add_record(
            BlobDType::Int8,
            values.len(),
            values.iter().map(|&x| x as u8),
        )
    }

    /// Adds a blob of any dtype.
    pub fn add(&mut self, data: &BlobData) -> u64 {
        match data {
            BlobData::Fp16(v) => self.add_f16(v),
            BlobData::Fp32(v) => self.add_f32(v),
            BlobData::UInt8(v) => self.add_u8(v),
            BlobData::Int8(v) => self.add_i8(v),
        }
    }

    /// The finished file, with the record count in the header.
    pub fn finish(mut self) -> Vec<u8> {
        assert!(self.count > 0, "a blob file needs at least one blob");
        self.buf[0..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// A one-blob fp16 file as upstream writes it: metadata at [`SINGLE_BLOB_OFFSET`] (64), data at
/// 128, `128 + 2n` bytes in total. Panics if `values` is empty.
pub fn single_f16(values: &[f16]) -> Vec<u8> {
    let mut w = BlobWriter::new();
    w.add_f16(values);
    w.finish()
}

/// Like [`single_f16`], converting from f32 (round to nearest, ties to even).
pub fn single_f32_as_f16(values: &[f32]) -> Vec<u8> {
    let mut w = BlobWriter::new();
    w.add_f32_as_f16(values);
    w.finish()
}

/// Validated metadata of one record of a [`BlobFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    metadata_offset: u64,
    dtype: BlobDType,
    data: Range<usize>,
}

impl BlobRecord {
    /// Offset of the metadata record: the `BLOBFILE` offset that refers to this blob.
    pub fn metadata_offset(&self) -> u64 {
        self.metadata_offset
    }

    /// Element type.
    pub fn dtype(&self) -> BlobDType {
        self.dtype
    }

    /// Byte range of the payload within the file.
    pub fn data_range(&self) -> Range<usize> {
        self.data.clone()
    }

    /// Number of elements (at least 1).
    pub fn element_count(&self) -> usize {
        self.data.len() / self.dtype.element_size()
    }
}

/// One blob of a [`BlobFile`], borrowing its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef<'a> {
    record: BlobRecord,
    bytes: &'a [u8],
}

impl<'a> BlobRef<'a> {
    /// The record's validated metadata.
    pub fn record(&self) -> &BlobRecord {
        &self.record
    }

    /// Element type.
    pub fn dtype(&self) -> BlobDType {
        self.record.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.record.element_count()
    }

    /// Always false: parsed blobs hold at least one element.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw little-endian payload bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// An owned, typed copy of the payload.
    pub fn to_data(&self) -> BlobData {
        BlobData::decode(self.dtype(), self.bytes)
    }

    /// Errors unless the blob has dtype `dtype`.
    fn expect(&self, dtype: BlobDType) -> Result<(), BlobError> {
        self.check_dtype(&[dtype], dtype.mil_name())
    }

    fn check_dtype(&self, accepted: &[BlobDType], expected: &'static str) -> Result<(), BlobError> {
        match accepted.contains(&self.dtype()) {
            true => Ok(()),
            false => {
                let offset = self.record.metadata_offset;
                Err(BlobError::DTypeMismatch {
                    offset,
                    expected,
                    found: self.dtype(),
                })
            }
        }
    }

    /// Errors unless the blob holds exactly `expected` elements.
    pub fn check_len(&self, expected: usize) -> Result<(), BlobError> {
        if self.len() == expected {
            return Ok(());
        }
        Err(BlobError::LengthMismatch {
            offset: self.record.metadata_offset,
            dtype: self.dtype(),
            bytes: self.bytes.len() as u64,
            found: self.len() as u64,
            expected: expected as u64,
        })
    }

    /// The elements of an fp16 blob.
    pub fn to_f16_vec(&self) -> Result<Vec<f16>, BlobError> {
        self.expect(BlobDType::Fp16)?;
        Ok(self
            .bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    /// The elements of an fp16 (exact widening) or fp32 blob as `f32`.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, BlobError> {
        self.check_dtype(&[BlobDType::Fp16, BlobDType::Fp32], "fp16 or fp32")?;
        Ok(self.to_data().to_f32_vec().unwrap_or_default())
    }

    /// The elements of a uint8 blob, borrowed from the file.
    pub fn as_u8(&self) -> Result<&'a [u8], BlobError> {
        self.expect(BlobDType::UInt8)?;
        Ok(self.bytes)
    }

    /// The elements of an int8 blob.
    pub fn to_i8_vec(&self) -> Result<Vec<i8>, BlobError> {
        self.expect(BlobDType::Int8)?;
        Ok(self.bytes.iter().map(|&b| b as i8).collect())
    }
}

/// A validated, read-only view of a blob file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFile<'a> {
    bytes: &'a [u8],
    records: Vec<BlobRecord>,
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from(read_u32(b, at)) | u64::from(read_u32(b, at + 4)) << 32
}

/// Offset and value of the first non-zero byte of `bytes[range]`.
fn first_nonzero(bytes: &[u8], range: Range<usize>) -> Option<(u64, u8)> {
    let start = range.start;
    let i = bytes[range].iter().position(|&b| b != 0)?;
    Some(((start + i) as u64, bytes[start + i]))
}

/// Rounds up to a multiple of 64; callers pass offsets bounded by a file length, so no overflow.
fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGNMENT) * ALIGNMENT
}

impl<'a> BlobFile<'a> {
    /// Parses and validates a whole blob file (see the module docs for the rules).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BlobError> {
        let len = bytes.len() as u64;
        if len < HEADER_SIZE {
            return Err(BlobError::TruncatedHeader { len });
        }
        let (count, version) = (read_u32(bytes, 0), read_u32(bytes, 4));
        if version != VERSION {
            return Err(BlobError::UnsupportedVersion { version });
        }
        if let Some((offset, value)) = first_nonzero(bytes, 8..HEADER_SIZE as usize) {
            return Err(BlobError::HeaderReservedNonZero { offset, value });
        }
        if count == 0 {
            return Err(BlobError::ZeroCount);
        }
        // Records take at least 65 bytes each, so the file length bounds the allocation.
        let mut records = Vec::with_capacity((count as usize).min(bytes.len() / 64));
        let mut pos = HEADER_SIZE;
        for index in 0..count {
            let record = Self::parse_record(bytes, pos, index, count)?;
            let end = record.data.end;
            records.push(record);
            let last = index + 1 == count;
            let next = align_up(end as u64);
            let trailing = BlobError::TrailingBytes {
                offset: end as u64,
                extra: len - end as u64,
                count,
            };
            if let Some((offset, value)) = first_nonzero(bytes, end..next.min(len) as usize) {
                return Err(if last {
                    trailing
                } else if bytes.len() - end >= 4 && read_u32(bytes, end) == SENTINEL {
                    BlobError::MisalignedRecord { offset: end as u64 }
                } else {
                    BlobError::NonZeroPadding { offset, value }
                });
            }
            if last && len > next {
                return Err(trailing);
            }
            pos = next;
        }
        Ok(BlobFile { bytes, records })
    }

    /// Validates the record whose metadata starts at the 64-aligned offset `pos`.
    fn parse_record(
        bytes: &[u8],
        pos: u64,
        index: u32,
        count: u32,
    ) -> Result<BlobRecord, BlobError> {
        let len = bytes.len() as u64;
        if pos + METADATA_SIZE > len {
            return Err(BlobError::TruncatedRecord {
                index,
                count,
                offset: pos,
                len,
            });
        }
        let at = pos as usize;
        let found = read_u32(bytes, at);
        if found != SENTINEL {
            return Err(BlobError::BadSentinel { offset: pos, found });
        }
        let code = read_u32(bytes, at + 4);
        let dtype =
            BlobDType::from_code(code).ok_or(BlobError::UnknownDType { offset: pos, code })?;
        let (size, data_offset) = (read_u64(bytes, at + 8), read_u64(bytes, at + 16));
        if let Some((offset, value)) = first_nonzero(bytes, at + 24..at + METADATA_SIZE as usize) {
            return Err(BlobError::MetadataReservedNonZero {
                record: pos,
                offset,
                value,
            });
        }
        if size == 0 {
            return Err(BlobError::EmptyBlob { offset: pos });
        }
        if size % dtype.element_size() as u64 > 0 {
            return Err(BlobError::SizeNotMultiple {
                offset: pos,
                dtype,
                size,
            });
        }
        if data_offset < pos + METADATA_SIZE {
            return Err(BlobError::DataBeforeMetadataEnd {
                offset: pos,
                data_offset,
            });
        }
        if data_offset % ALIGNMENT > 0 {
            return Err(BlobError::MisalignedData {
                offset: pos,
                data_offset,
            });
        }
        let end = match data_offset.checked_add(size) {
            Some(end) if end <= len => end as usize,
            _ => {
                return Err(BlobError::DataOutOfBounds {
                    offset: pos,
                    data_offset,
                    size,
                    len,
                })
            }
        };
        let data = data_offset as usize..end;
        if let Some((offset, value)) = first_nonzero(bytes, at + METADATA_SIZE as usize..data.start)
        {
            return Err(BlobError::NonZeroPadding { offset, value });
        }
        Ok(BlobRecord {
            metadata_offset: pos,
            dtype,
            data,
        })
    }

    /// All records in file order.
    pub fn blobs(&self) -> &[BlobRecord] {
        &self.records
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Resolves a `BLOBFILE` offset: the blob whose metadata record starts at `metadata_offset`.
    pub fn get(&self, metadata_offset: u64) -> Result<BlobRef<'a>, BlobError> {
        let records = &self.records;
        if let Ok(i) = records.binary_search_by_key(&metadata_offset, |r| r.metadata_offset) {
            let bytes = &self.bytes[records[i].data.clone()];
            return Ok(BlobRef {
                record: records[i].clone(),
                bytes,
            });
        }
        Err(
            match records
                .iter()
                .find(|r| r.data.start as u64 == metadata_offset)
            {
                Some(r) => BlobError::OffsetIsPayload {
                    offset: metadata_offset,
                    record: r.metadata_offset,
                },
                None => BlobError::NoRecordAt {
                    offset: metadata_offset,
                    starts: records.iter().map(|r| r.metadata_offset).collect(),
                },
            },
        )
    }

    /// Resolves `metadata_offset`, converts with `f` (which checks the dtype), checks the length.
    fn read_as<T>(
        &self,
        metadata_offset: u64,
        expected_len: usize,
        f: impl FnOnce(&BlobRef<'a>) -> Result<T, BlobError>,
    ) -> Result<T, BlobError> {
        let blob = self.get(metadata_offset)?;
        let values = f(&blob)?;
        blob.check_len(expected_len)?;
        Ok(values)
    }

    /// The fp16 or fp32 blob at `metadata_offset` as `f32`; it must hold `expected_len` elements.
    pub fn read_f32(
        &self,
        metadata_offset: u64,
        expected_len: usize,
    ) -> Result<Vec<f32>, BlobError> {
        self.read_as(metadata_offset, expected_len, BlobRef::to_f32_vec)
    }

    /// The fp16 blob at `metadata_offset`; it must hold `expected_len` elements.
    pub fn read_f16(
        &self,
        metadata_offset: u64,
        expected_len: usize,
    ) -> Result<Vec<f16>, BlobError> {
        self.read_as(metadata_offset, expected_len, BlobRef::to_f16_vec)
    }

    /// The uint8 blob at `metadata_offset`; it must hold `expected_len` elements.
    pub fn read_u8(
        &self,
        metadata_offset: u64,
        expected_len: usize,
    ) -> Result<&'a [u8], BlobError> {
        self.read_as(metadata_offset, expected_len, BlobRef::as_u8)
    }

    /// The int8 blob at `metadata_offset`; it must hold `expected_len` elements.
    pub fn read_i8(&self, metadata_offset: u64, expected_len: usize) -> Result<Vec<i8>, BlobError> {
        self.read_as(metadata_offset, expected_len, BlobRef::to_i8_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16s(v: &[f32]) -> Vec<f16> {
        v.iter().map(|&x| f16::from_f32(x)).collect()
    }

    #[test]
    fn dtype_codes_round_trip() {
        for d in [
            BlobDType::Fp16,
            BlobDType::Fp32,
            BlobDType::UInt8,
            BlobDType::Int8,
        ] {
            assert_eq!(BlobDType::from_code(d.code()), Some(d));
        }
        assert_eq!(BlobDType::from_code(0), None);
        assert_eq!(BlobDType::from_code(5), None);
        assert_eq!(BlobDType::Fp32.element_size(), 4);
        assert_eq!(BlobDType::Int8.to_string(), "int8");
    }

    #[test]
    fn single_fp16_matches_upstream_layout() {
        let values = f16s(&[1.0, -2.0, 0.5]);
        let bytes = single_f16(&values);
        assert_eq!(bytes.len(), 128 + 2 * 3);
        assert_eq!(&bytes[0..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert!(bytes[8..64].iter().all(|&b| b == 0));
        assert_eq!(&bytes[64..68], &[0xEF, 0xBE, 0xAD, 0xDE]);
        assert_eq!(read_u32(&bytes, 68), 1);
        assert_eq!(read_u64(&bytes, 72), 6);
        assert_eq!(read_u64(&bytes, 80), 128);
        assert!(bytes[88..128].iter().all(|&b| b == 0));
        assert_eq!(&bytes[128..130], &0x3C00u16.to_le_bytes());
        let file = BlobFile::parse(&bytes).unwrap();
        assert_eq!(file.blobs().len(), 1);
        assert_eq!(file.blobs()[0].metadata_offset(), SINGLE_BLOB_OFFSET);
        assert_eq!(file.blobs()[0].data_range(), 128..134);
        assert_eq!(file.read_f16(64, 3).unwrap(), values);
        assert_eq!(file.read_f32(64, 3).unwrap(), vec![1.0, -2.0, 0.5]);
    }

    #[test]
    fn each_dtype_round_trips() {
        let f32s = [1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE, 3.25];
        let u8s: Vec<u8> = (0..=255).collect();
        let i8s: Vec<i8> = (-128..=127).collect();
        let h = f16s(&[65504.0, -65504.0, 6.1e-5, 0.0]);
        let mut w = BlobWriter::new();
        let o_h = w.add_f16(&h);
        let o_f = w.add_f32(&f32s);
        let o_u = w.add_u8(&u8s);
        let o_i = w.add_i8(&i8s);
        assert_eq!(w.count(), 4);
        let bytes = w.finish();
        let file = BlobFile::parse(&bytes).unwrap();
        assert_eq!(file.read_f16(o_h, 4).unwrap(), h);
        assert_eq!(file.read_f32(o_f, 5).unwrap(), f32s);
        assert_eq!(file.read_u8(o_u, 256).unwrap(), &u8s[..]);
        assert_eq!(file.read_i8(o_i, 256).unwrap(), i8s);
        let datas: Vec<BlobData> = file
            .blobs()
            .iter()
            .map(|r| file.get(r.metadata_offset()).unwrap().to_data())
            .collect();
        assert_eq!(datas[0], BlobData::Fp16(h));
        assert_eq!(datas[1].to_f32_vec().unwrap(), f32s);
        assert_eq!(datas[2], BlobData::UInt8(u8s));
        assert_eq!(datas[3], BlobData::Int8(i8s));
        assert_eq!(datas[3].to_f32_vec(), None);
        // Re-serialising the owned data gives the identical file.
        let mut again = BlobWriter::new();
        for d in &datas {
            again.add(d);
        }
        assert_eq!(again.finish(), bytes);
    }

    #[test]
    fn f32_as_f16_rounds_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1.0).
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties go to 1 + 2^-9.
        let x = [1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 70000.0];
        let file_bytes = single_f32_as_f16(&x);
        let file = BlobFile::parse(&file_bytes).unwrap();
        let got = file.read_f32(64, 3).unwrap();
        assert_eq!(got, vec![1.0, 1.0 + 2f32.powi(-9), f32::INFINITY]);
    }

    #[test]
    fn multi_blob_offsets_and_padding() {
        let mut w = BlobWriter::new();
        let a = w.add_f16(&f16s(&[1.0; 5])); // 10 bytes: 128..138, pad to 192
        let b = w.add_u8(&[7; 64]); // exactly 64 bytes: 256..320
        let c = w.add_f32(&[2.0; 3]); // 12 bytes: 384..396, unpadded
        assert_eq!((a, b, c), (64, 192, 320));
        let bytes = w.finish();
        assert_eq!(bytes.len(), 396);
        assert_eq!(read_u32(&bytes, 0), 3);
        assert!(bytes[138..192].iter().all(|&x| x == 0));
        let file = BlobFile::parse(&bytes).unwrap();
        let ranges: Vec<_> = file.blobs().iter().map(BlobRecord::data_range).collect();
        assert_eq!(ranges, vec![128..138, 256..320, 384..396]);
        assert_eq!(file.read_f32(c, 3).unwrap(), vec![2.0; 3]);
        assert_eq!(file.get(b).unwrap().bytes(), &[7; 64]);
    }

    #[test]
    fn final_padding_is_optional() {
        let mut bytes = single_f16(&f16s(&[1.0; 5]));
        assert_eq!(bytes.len(), 138);
        for pad_to in [139, 150, 192] {
            bytes.resize(pad_to, 0);
            assert!(BlobFile::parse(&bytes).is_ok(), "padded to {pad_to}");
        }
        bytes.push(0);
        assert_eq!(
            BlobFile::parse(&bytes),
            Err(BlobError::TrailingBytes {
                offset: 138,
                extra: 55,
                count: 1
            })
        );
    }

    #[test]
    fn full_width_fields_are_read() {
        // A size above 4 GiB must not be truncated to 32 bits (which would give 2 here).
        let mut bytes = single_f16(&f16s(&[1.0]));
        bytes[72..80].copy_from_slice(&(2u64 + (1 << 32)).to_le_bytes());
        assert!(matches!(
            BlobFile::parse(&bytes),
            Err(BlobError::DataOutOfBounds { size, .. }) if size == 2 + (1 << 32)
        ));
    }

    #[test]
    #[should_panic(expected = "at least one element")]
    fn empty_payload_panics() {
        BlobWriter::new().add_f32(&[]);
    }

    #[test]
    #[should_panic(expected = "at least one blob")]
    fn empty_writer_panics() {
        let _ = BlobWriter::new().finish();
    }
}
