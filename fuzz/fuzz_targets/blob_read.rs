//! Fuzz the MIL blob storage v2 reader: parsing arbitrary bytes must never panic, and every file it
//! accepts must resolve each record and survive a write/re-parse round trip with identical payloads.

#![no_main]

use ane_mil::blob::{BlobDType, BlobData, BlobFile, BlobWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(file) = BlobFile::parse(bytes) else {
        return;
    };
    assert!(!file.blobs().is_empty());

    let mut writer = BlobWriter::new();
    let mut expected = Vec::new();
    for record in file.blobs() {
        let offset = record.metadata_offset();
        let n = record.element_count();
        let blob = file
            .get(offset)
            .expect("every parsed record resolves by its metadata offset");
        assert_eq!(blob.record(), record);
        assert_eq!(blob.bytes(), &bytes[record.data_range()]);
        assert_eq!(blob.len(), n);
        assert!(n > 0);
        // A payload offset is never a record start.
        assert!(file.get(record.data_range().start as u64).is_err());

        let data = blob.to_data();
        assert_eq!(data.dtype(), record.dtype());
        assert_eq!(data.len(), n);
        assert_eq!(data.to_le_bytes(), blob.bytes());
        match record.dtype() {
            BlobDType::Fp16 => {
                assert_eq!(file.read_f16(offset, n).unwrap().len(), n);
                assert_eq!(file.read_f32(offset, n).unwrap().len(), n);
            }
            BlobDType::Fp32 => assert_eq!(file.read_f32(offset, n).unwrap().len(), n),
            BlobDType::UInt8 => assert_eq!(file.read_u8(offset, n).unwrap(), blob.bytes()),
            BlobDType::Int8 => assert_eq!(file.read_i8(offset, n).unwrap().len(), n),
        }
        assert!(file.read_f32(offset, n + 1).is_err());

        let new_offset = writer.add(&data);
        expected.push((new_offset, data));
    }

    let rewritten = writer.finish();
    let reparsed = BlobFile::parse(&rewritten).expect("writer output must parse");
    assert_eq!(reparsed.blobs().len(), expected.len());
    for ((offset, data), record) in expected.iter().zip(reparsed.blobs()) {
        assert_eq!(record.metadata_offset(), *offset);
        let again: BlobData = reparsed.get(*offset).unwrap().to_data();
        // Compare bytes, not values: NaN payloads must survive bit for bit.
        assert_eq!(again.to_le_bytes(), data.to_le_bytes());
        assert_eq!(again.dtype(), data.dtype());
    }
});
