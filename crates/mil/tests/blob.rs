//! Malformed-input and layout tests for the MIL blob storage v2 reader/writer.

use ane_mil::blob::{single_f16, BlobDType, BlobError, BlobFile, BlobWriter};
use half::f16;

/// Storage header written by hand (independent of `BlobWriter`).
fn header(count: u32, version: u32) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[0..4].copy_from_slice(&count.to_le_bytes());
    h[4..8].copy_from_slice(&version.to_le_bytes());
    h
}

/// Metadata record written by hand.
fn metadata(sentinel: u32, dtype: u32, size: u64, data_offset: u64) -> Vec<u8> {
    let mut m = vec![0u8; 64];
    m[0..4].copy_from_slice(&sentinel.to_le_bytes());
    m[4..8].copy_from_slice(&dtype.to_le_bytes());
    m[8..16].copy_from_slice(&size.to_le_bytes());
    m[16..24].copy_from_slice(&data_offset.to_le_bytes());
    m
}

/// One-record file: header, metadata at 64, `payload` at 128.
fn one_record(dtype: u32, size: u64, data_offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = header(1, 2);
    f.extend(metadata(0xDEAD_BEEF, dtype, size, data_offset));
    f.extend_from_slice(payload);
    f
}

fn parse_err(bytes: &[u8]) -> BlobError {
    BlobFile::parse(bytes).expect_err("malformed file must be rejected")
}

#[test]
fn parses_upstream_single_fp16_layout() {
    let n = 300usize;
    let values: Vec<f16> = (0..n)
        .map(|i| f16::from_f32(i as f32 * 0.25 - 7.0))
        .collect();
    let payload: Vec<u8> = values
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .collect();
    let bytes = one_record(1, 2 * n as u64, 128, &payload);
    assert_eq!(bytes.len(), 128 + 2 * n);
    let file = BlobFile::parse(&bytes).unwrap();
    assert_eq!(file.blobs().len(), 1);
    let rec = &file.blobs()[0];
    assert_eq!(rec.metadata_offset(), 64);
    assert_eq!(rec.dtype(), BlobDType::Fp16);
    assert_eq!(rec.data_range(), 128..128 + 2 * n);
    assert_eq!(rec.element_count(), n);
    assert_eq!(file.read_f16(64, n).unwrap(), values);
    // Our writer produces the very same bytes.
    assert_eq!(single_f16(&values), bytes);
}

#[test]
fn truncated_header() {
    let e = parse_err(&[1, 0, 0, 0, 2, 0, 0, 0, 0, 0]);
    assert_eq!(e, BlobError::TruncatedHeader { len: 10 });
    assert_eq!(
        e.to_string(),
        "blob file truncated: header needs 64 bytes, file has 10"
    );
    assert_eq!(parse_err(&[]), BlobError::TruncatedHeader { len: 0 });
}

#[test]
fn wrong_version() {
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[4] = 1;
    let e = parse_err(&f);
    assert_eq!(e, BlobError::UnsupportedVersion { version: 1 });
    assert_eq!(
        e.to_string(),
        "unsupported blob storage version 1 at offset 4 (expected 2)"
    );
}

#[test]
fn nonzero_header_reserved() {
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[10] = 0x08; // the stray byte some upstream benchmark writers leave
    let e = parse_err(&f);
    assert_eq!(
        e,
        BlobError::HeaderReservedNonZero {
            offset: 10,
            value: 8
        }
    );
    assert_eq!(
        e.to_string(),
        "blob file header: reserved byte at offset 10 is 0x08 (expected 0)"
    );
}

#[test]
fn zero_count() {
    let f = header(0, 2);
    assert_eq!(parse_err(&f), BlobError::ZeroCount);
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[0] = 0;
    assert_eq!(parse_err(&f), BlobError::ZeroCount);
}

#[test]
fn count_larger_than_records_present() {
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[0] = 2;
    let e = parse_err(&f);
    assert_eq!(
        e,
        BlobError::TruncatedRecord {
            index: 1,
            count: 2,
            offset: 192,
            len: 130
        }
    );
    assert_eq!(
        e.to_string(),
        "blob file truncated: record 2 of 2 at offset 192 needs 64 bytes of metadata, file has 130 bytes"
    );
    // A huge count must neither panic nor allocate by count.
    f[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&f),
        BlobError::TruncatedRecord {
            index: 1,
            count: u32::MAX,
            ..
        }
    ));
    // Header only.
    assert_eq!(
        parse_err(&header(1, 2)),
        BlobError::TruncatedRecord {
            index: 0,
            count: 1,
            offset: 64,
            len: 64
        }
    );
}

#[test]
fn bad_sentinel() {
    let mut f = header(1, 2);
    f.extend(metadata(0, 1, 2, 128));
    f.extend([0, 0x3C]);
    let e = parse_err(&f);
    assert_eq!(
        e,
        BlobError::BadSentinel {
            offset: 64,
            found: 0
        }
    );
    assert_eq!(
        e.to_string(),
        "blob record at offset 64: bad sentinel 0x00000000 (expected 0xDEADBEEF)"
    );
    // Big-endian sentinel is also wrong.
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[64..68].copy_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
    assert_eq!(
        parse_err(&f),
        BlobError::BadSentinel {
            offset: 64,
            found: 0xEFBE_ADDE
        }
    );
}

#[test]
fn unknown_dtype() {
    for code in [0, 5, 9, u32::MAX] {
        let f = one_record(code, 2, 128, &[0, 0x3C]);
        assert_eq!(parse_err(&f), BlobError::UnknownDType { offset: 64, code });
    }
    let e = parse_err(&one_record(9, 2, 128, &[0, 0x3C]));
    assert!(
        e.to_string()
            .starts_with("unsupported blob dtype code 9 at offset 64"),
        "{e}"
    );
}

#[test]
fn size_not_multiple_of_element_size() {
    let e = parse_err(&one_record(2, 6, 128, &[0; 6]));
    assert_eq!(
        e,
        BlobError::SizeNotMultiple {
            offset: 64,
            dtype: BlobDType::Fp32,
            size: 6
        }
    );
    assert_eq!(
        e.to_string(),
        "blob record at offset 64: size_in_bytes 6 is not a multiple of the fp32 element size 4"
    );
    assert_eq!(
        parse_err(&one_record(1, 3, 128, &[0; 3])),
        BlobError::SizeNotMultiple {
            offset: 64,
            dtype: BlobDType::Fp16,
            size: 3
        }
    );
}

#[test]
fn empty_blob() {
    assert_eq!(
        parse_err(&one_record(3, 0, 128, &[])),
        BlobError::EmptyBlob { offset: 64 }
    );
}

#[test]
fn data_out_of_bounds_and_overflow() {
    // Size claims more bytes than present.
    assert_eq!(
        parse_err(&one_record(1, 4, 128, &[0, 0x3C])),
        BlobError::DataOutOfBounds {
            offset: 64,
            data_offset: 128,
            size: 4,
            len: 130
        }
    );
    // Data offset past the end.
    assert_eq!(
        parse_err(&one_record(1, 2, 192, &[0, 0x3C])),
        BlobError::DataOutOfBounds {
            offset: 64,
            data_offset: 192,
            size: 2,
            len: 130
        }
    );
    // data_offset + size overflows u64 (aligned data offset near u64::MAX).
    let big = u64::MAX - 63;
    let e = parse_err(&one_record(1, 128, big, &[0, 0x3C]));
    assert_eq!(
        e,
        BlobError::DataOutOfBounds {
            offset: 64,
            data_offset: big,
            size: 128,
            len: 130
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "blob record at offset 64: payload of 128 bytes at data offset {big} extends past the \
             end of the file (130 bytes)"
        )
    );
    // size = u64::MAX - 1 (a multiple of 2).
    assert_eq!(
        parse_err(&one_record(1, u64::MAX - 1, 128, &[0, 0x3C])),
        BlobError::DataOutOfBounds {
            offset: 64,
            data_offset: 128,
            size: u64::MAX - 1,
            len: 130
        }
    );
    // data_offset = u64::MAX is rejected by the alignment check first, without overflow.
    assert_eq!(
        parse_err(&one_record(1, 2, u64::MAX, &[0, 0x3C])),
        BlobError::MisalignedData {
            offset: 64,
            data_offset: u64::MAX
        }
    );
}

#[test]
fn data_offset_before_metadata_end() {
    for data_offset in [0, 64, 100, 127] {
        assert_eq!(
            parse_err(&one_record(1, 2, data_offset, &[0, 0x3C])),
            BlobError::DataBeforeMetadataEnd {
                offset: 64,
                data_offset
            }
        );
    }
    let e = parse_err(&one_record(1, 2, 64, &[0, 0x3C]));
    assert_eq!(
        e.to_string(),
        "blob record at offset 64: data offset 64 points before the end of its metadata (expected at least 128)"
    );
}

#[test]
fn misaligned_data_offset() {
    let mut payload = vec![0u8; 4];
    payload.extend([0, 0x3C]);
    assert_eq!(
        parse_err(&one_record(1, 2, 132, &payload)),
        BlobError::MisalignedData {
            offset: 64,
            data_offset: 132
        }
    );
}

#[test]
fn misaligned_metadata_from_unpadded_multi_blob() {
    // Two records written back to back without padding, as some upstream writers do.
    let mut f = header(2, 2);
    f.extend(metadata(0xDEAD_BEEF, 3, 10, 128));
    f.extend([1u8; 10]); // payload 128..138
    f.extend(metadata(0xDEAD_BEEF, 3, 10, 202));
    f.extend([2u8; 10]);
    let e = parse_err(&f);
    assert_eq!(e, BlobError::MisalignedRecord { offset: 138 });
    assert!(
        e.to_string().ends_with(
            "blob record at offset 138 is not 64-byte aligned (the previous payload must be \
             zero-padded so the record starts at offset 192)"
        ),
        "{e}"
    );
}

#[test]
fn nonzero_padding() {
    // Between records.
    let mut w = BlobWriter::new();
    w.add_u8(&[1; 10]);
    w.add_u8(&[2; 10]);
    let mut f = w.finish();
    f[150] = 0x55;
    assert_eq!(
        parse_err(&f),
        BlobError::NonZeroPadding {
            offset: 150,
            value: 0x55
        }
    );
    // Between metadata and a data offset that leaves a gap.
    let mut g = one_record(3, 1, 192, &[0; 64]);
    g.push(7);
    g[140] = 0xAA;
    let e = parse_err(&g);
    assert_eq!(
        e,
        BlobError::NonZeroPadding {
            offset: 140,
            value: 0xAA
        }
    );
    assert_eq!(
        e.to_string(),
        "blob file: padding byte at offset 140 is 0xAA (expected 0)"
    );
    // With the gap zeroed the same file is valid.
    g[140] = 0;
    assert_eq!(BlobFile::parse(&g).unwrap().read_u8(64, 1).unwrap(), &[7]);
}

#[test]
fn trailing_garbage() {
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f.push(0xFF);
    let e = parse_err(&f);
    assert_eq!(
        e,
        BlobError::TrailingBytes {
            offset: 130,
            extra: 1,
            count: 1
        }
    );
    assert!(
        e.to_string()
            .starts_with("blob file has 1 unexpected trailing bytes at offset 130"),
        "{e}"
    );
    // A second, well-formed record not declared by count=1 (upstream's multi-blob writers).
    let mut w = BlobWriter::new();
    w.add_f16(&[f16::ONE]);
    w.add_f16(&[f16::ONE]);
    let mut two = w.finish();
    two[0] = 1;
    assert_eq!(
        parse_err(&two),
        BlobError::TrailingBytes {
            offset: 130,
            extra: 258 - 130,
            count: 1
        }
    );
    // Zero bytes beyond the 64-byte boundary are also trailing bytes.
    let mut z = one_record(1, 2, 128, &[0, 0x3C]);
    z.resize(193, 0);
    assert_eq!(
        parse_err(&z),
        BlobError::TrailingBytes {
            offset: 130,
            extra: 63,
            count: 1
        }
    );
}

#[test]
fn nonzero_metadata_reserved() {
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[64 + 63] = 1;
    let e = parse_err(&f);
    assert_eq!(
        e,
        BlobError::MetadataReservedNonZero {
            record: 64,
            offset: 127,
            value: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "blob record at offset 64: reserved byte at offset 127 is 0x01 (expected 0)"
    );
    let mut f = one_record(1, 2, 128, &[0, 0x3C]);
    f[88] = 0x80;
    assert_eq!(
        parse_err(&f),
        BlobError::MetadataReservedNonZero {
            record: 64,
            offset: 88,
            value: 0x80
        }
    );
}

#[test]
fn get_with_offset_that_is_not_a_record() {
    let mut w = BlobWriter::new();
    let a = w.add_f16(&[f16::ONE; 40]);
    let b = w.add_f32(&[1.0; 3]);
    assert_eq!((a, b), (64, 256));
    let bytes = w.finish();
    let file = BlobFile::parse(&bytes).unwrap();
    let e = file.get(0).unwrap_err();
    assert_eq!(
        e,
        BlobError::NoRecordAt {
            offset: 0,
            starts: vec![64, 256]
        }
    );
    assert_eq!(
        e.to_string(),
        "no blob record starts at offset 0 (records start at 64, 256)"
    );
    assert_eq!(
        file.get(65).unwrap_err(),
        BlobError::NoRecordAt {
            offset: 65,
            starts: vec![64, 256]
        }
    );
    assert_eq!(
        file.get(u64::MAX).unwrap_err(),
        BlobError::NoRecordAt {
            offset: u64::MAX,
            starts: vec![64, 256]
        }
    );
    // Pitfall: using the payload offset instead of the metadata offset.
    let e = file.read_f32(128, 40).unwrap_err();
    assert_eq!(
        e,
        BlobError::OffsetIsPayload {
            offset: 128,
            record: 64
        }
    );
    assert!(
        e.to_string().contains("payload of the record at offset 64"),
        "{e}"
    );
    assert_eq!(
        file.get(320).unwrap_err(),
        BlobError::OffsetIsPayload {
            offset: 320,
            record: 256
        }
    );
}

#[test]
fn typed_accessor_dtype_and_length_mismatch() {
    let mut w = BlobWriter::new();
    let h = w.add_f16(&[f16::ONE; 128]);
    let i = w.add_i8(&[-1; 5]);
    let bytes = w.finish();
    let file = BlobFile::parse(&bytes).unwrap();
    let e = file.read_f32(h, 100).unwrap_err();
    assert_eq!(
        e,
        BlobError::LengthMismatch {
            offset: 64,
            dtype: BlobDType::Fp16,
            bytes: 256,
            found: 128,
            expected: 100
        }
    );
    assert_eq!(
        e.to_string(),
        "blob at offset 64 holds 256 bytes of fp16 (128 elements), expected 100 elements"
    );
    let e = file.read_f32(i, 5).unwrap_err();
    assert_eq!(
        e,
        BlobError::DTypeMismatch {
            offset: i,
            expected: "fp16 or fp32",
            found: BlobDType::Int8
        }
    );
    assert_eq!(
        e.to_string(),
        format!("blob at offset {i} holds int8, expected fp16 or fp32")
    );
    assert!(matches!(
        file.read_i8(h, 128),
        Err(BlobError::DTypeMismatch {
            expected: "int8",
            found: BlobDType::Fp16,
            ..
        })
    ));
    assert!(matches!(
        file.read_u8(i, 5),
        Err(BlobError::DTypeMismatch {
            expected: "uint8",
            found: BlobDType::Int8,
            ..
        })
    ));
    assert!(matches!(
        file.read_f16(i, 5),
        Err(BlobError::DTypeMismatch {
            expected: "fp16",
            found: BlobDType::Int8,
            ..
        })
    ));
    assert_eq!(file.read_i8(i, 5).unwrap(), vec![-1; 5]);
    assert_eq!(file.read_f32(h, 128).unwrap(), vec![1.0; 128]);
}

#[test]
fn writer_offsets_follow_mil_convention() {
    // Blob i starts at the 64-aligned end of blob i-1's payload.
    let sizes = [1usize, 31, 32, 33, 64, 100];
    let mut w = BlobWriter::new();
    let mut expected = 64u64;
    let mut offsets = Vec::new();
    for &n in &sizes {
        let o = w.add_f16(&vec![f16::from_f32(n as f32); n]);
        assert_eq!(o, expected);
        offsets.push(o);
        expected = (o + 64 + 2 * n as u64).div_ceil(64) * 64;
    }
    let bytes = w.finish();
    assert_eq!(
        u32::from_le_bytes(bytes[0..4].try_into().unwrap()),
        sizes.len() as u32
    );
    assert_eq!(bytes.len() as u64, offsets[5] + 64 + 200);
    let file = BlobFile::parse(&bytes).unwrap();
    for (&o, &n) in offsets.iter().zip(&sizes) {
        assert_eq!(file.read_f32(o, n).unwrap(), vec![n as f32; n]);
    }
}

#[test]
fn no_panic_on_truncations_of_a_valid_file() {
    let mut w = BlobWriter::new();
    w.add_f16(&[f16::ONE; 7]);
    w.add_f32(&[2.0; 9]);
    w.add_i8(&[3; 70]);
    let bytes = w.finish();
    assert!(BlobFile::parse(&bytes).is_ok());
    for cut in 0..bytes.len() {
        assert!(
            BlobFile::parse(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    // Flipping any single byte never panics.
    for i in 0..bytes.len() {
        let mut m = bytes.clone();
        m[i] ^= 0xFF;
        let _ = BlobFile::parse(&m);
    }
}
