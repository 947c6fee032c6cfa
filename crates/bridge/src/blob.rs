//! Weight blob builders (coremltools blob storage v2, `ane_mil::blob`) and the registry of the
//! buffers handed to C, so `ane_bridge_free_blob` of a pointer it did not hand out (or of one
//! already freed) is an error instead of heap corruption.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ane_mil::blob::BlobWriter;

use crate::error::{BridgeError, Result};

/// `rows · cols` for the builders: both positive, product without overflow.
pub fn elements(rows: i32, cols: i32) -> Result<usize> {
    let bad =
        || BridgeError::Argument(format!("rows {rows} and cols {cols} must both be positive"));
    let r = usize::try_from(rows)
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(bad)?;
    let c = usize::try_from(cols)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(bad)?;
    r.checked_mul(c)
        .filter(|&n| n <= isize::MAX as usize / 4)
        .ok_or_else(|| BridgeError::Argument(format!("{rows} x {cols} elements is too many")))
}

/// One fp16 blob of `src` (row-major `rows × cols`): 64-byte header, 64-byte metadata, data.
pub fn fp16(src: &[f32]) -> Vec<u8> {
    let mut w = BlobWriter::new();
    w.add_f32_as_f16(src);
    w.finish()
}

/// `src` (`rows × cols`) transposed to `cols × rows`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = src[r * cols + c];
        }
    }
    t
}

/// One int8 blob of `src` (same header layout as [`fp16`], dtype int8).
pub fn int8(src: &[i8]) -> Vec<u8> {
    let mut w = BlobWriter::new();
    w.add_i8(src);
    w.finish()
}

/// Symmetric per-tensor quantisation: `scale = max|w| / 127` (1 when all are 0), then
/// `q = round(w / scale)` (half away from zero) clamped to `-128..=127`. Non-finite values are
/// an error.
pub fn quantize(src: &[f32]) -> Result<(Vec<i8>, f32)> {
    if let Some(i) = src.iter().position(|v| !v.is_finite()) {
        return Err(BridgeError::Argument(format!(
            "element {i} is {} (quantising needs finite values)",
            src[i]
        )));
    }
    let max = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max == 0.0 { 1.0 } else { max / 127.0 };
    let q = src
        .iter()
        .map(|v| (v / scale).round().clamp(-128.0, 127.0) as i8)
        .collect();
    Ok((q, scale))
}

/// Buffers handed out, by address.
static LIVE: Mutex<Option<HashMap<usize, Box<[u8]>>>> = Mutex::new(None);

/// Hands `blob` to C: returns its address and length; it stays allocated until [`free`].
pub fn hand_out(blob: Vec<u8>) -> (*mut u8, usize) {
    let mut b = blob.into_boxed_slice();
    let (ptr, len) = (b.as_mut_ptr(), b.len());
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(ptr as usize, b);
    (ptr, len)
}

/// Frees a buffer [`hand_out`] returned. NULL is allowed and does nothing.
pub fn free(ptr: usize) -> Result<()> {
    if ptr == 0 {
        return Ok(());
    }
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .and_then(|m| m.remove(&ptr))
        .map(drop)
        .ok_or_else(|| {
            BridgeError::Argument(
                "ane_bridge_free_blob: not a blob returned by ane_bridge_build_weight_blob* (or already freed)"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ane_mil::blob::BlobFile;

    #[test]
    fn builders_write_blob_v2_that_reads_back() {
        let src = [1.0f32, -2.0, 0.5, 3.0, 4.0, -0.25];
        let b = fp16(&src);
        assert_eq!(b.len(), 128 + 2 * src.len());
        assert_eq!(&b[64..68], &0xDEAD_BEEFu32.to_le_bytes());
        let t = transpose(&src, 2, 3);
        assert_eq!(t, [1.0, 3.0, -2.0, 4.0, 0.5, -0.25]);
        let file = BlobFile::parse(&b).unwrap();
        let got = file.read_f32(64, src.len()).unwrap();
        assert_eq!(got, src);
        let (q, scale) = quantize(&[0.0, 1.27, -2.54]).unwrap();
        assert!((scale - 0.02).abs() < 1e-6);
        assert_eq!(q, [0, 64, -127]);
        let i = int8(&q);
        let back = BlobFile::parse(&i).unwrap();
        assert_eq!(back.read_i8(64, 3).unwrap(), q);
        assert_eq!(quantize(&[0.0; 3]).unwrap().1, 1.0);
        assert!(quantize(&[f32::NAN]).is_err());
        assert!(elements(0, 3).is_err() && elements(2, -1).is_err());
        assert_eq!(elements(2, 3).unwrap(), 6);
    }

    #[test]
    fn free_refuses_unknown_and_double_frees() {
        let (p, n) = hand_out(vec![1, 2, 3]);
        assert_eq!(n, 3);
        free(p as usize).unwrap();
        assert!(free(p as usize).is_err());
        assert!(free(8).is_err());
        free(0).unwrap();
    }
}
