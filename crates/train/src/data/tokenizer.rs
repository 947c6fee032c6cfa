//! The byte tokenizer: every byte is a token, plus three specials. It needs no vocabulary
//! file, fits every preset's vocabulary (259 ids), and round-trips any text exactly.

/// Ids: `0` padding (never produced by [`ByteTokenizer::encode`]), `1` BOS, `2` EOS,
/// byte `b` → `b + 3`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Padding id.
    pub const PAD: u32 = 0;
    /// Beginning-of-document id.
    pub const BOS: u32 = 1;
    /// End-of-document id.
    pub const EOS: u32 = 2;
    /// Id of byte 0.
    const FIRST_BYTE: u32 = 3;
    /// Number of ids: 3 specials + 256 bytes.
    pub const VOCAB_SIZE: usize = 259;

    /// The ids of `text`'s bytes (no BOS/EOS).
    pub fn encode(&self, text: &[u8]) -> Vec<u32> {
        text.iter()
            .map(|&b| u32::from(b) + Self::FIRST_BYTE)
            .collect()
    }

    /// The bytes of `ids`; specials and ids past the vocabulary are skipped.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .filter_map(|&id| {
                id.checked_sub(Self::FIRST_BYTE)
                    .and_then(|b| u8::try_from(b).ok())
            })
            .collect()
    }

    /// [`ByteTokenizer::decode_bytes`] as text (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes_and_skips_specials() {
        let t = ByteTokenizer;
        let all: Vec<u8> = (0..=255).collect();
        let ids = t.encode(&all);
        assert_eq!(ids[0], 3);
        assert_eq!(*ids.last().unwrap() as usize, ByteTokenizer::VOCAB_SIZE - 1);
        assert_eq!(t.decode_bytes(&ids), all);
        let mut with = vec![ByteTokenizer::BOS];
        with.extend(t.encode("héllo".as_bytes()));
        with.extend([ByteTokenizer::EOS, ByteTokenizer::PAD, 9999]);
        assert_eq!(t.decode(&with), "héllo");
    }
}
