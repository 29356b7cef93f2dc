//! AES-CBC with a zero IV, as DC-09 uses it (protocols.md §1.6).
//!
//! DC-09 encrypts with AES-128, -192 or -256 in CBC mode with an all-zero IV and its own
//! front padding (random pad bytes and a `|`), never PKCS#7. This module only does the block
//! cipher part, in place, on buffers whose length is a multiple of 16; the pad rule lives in
//! [`super::dc09`].

use std::fmt;

use aes::cipher::array::Array;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

/// AES block size in bytes.
pub const BLOCK: usize = 16;

/// The all-zero IV every DC-09 implementation uses (PSA, S09, SPT, RS, IOB).
const ZERO_IV: [u8; BLOCK] = [0u8; BLOCK];

/// A DC-09 AES key. Stored as raw bytes whatever form it was provisioned in.
///
/// `Debug` never prints the key material: it prints `Key(AES-128, redacted)`.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// 128-bit key (16 bytes).
    Aes128([u8; 16]),
    /// 192-bit key (24 bytes).
    Aes192([u8; 24]),
    /// 256-bit key (32 bytes).
    Aes256([u8; 32]),
}

/// Why a key could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 16, 24 or 32 bytes (32, 48 or 64 hex digits; 16, 24 or 32 ASCII characters).
    #[error("key must be 16, 24 or 32 bytes (32, 48 or 64 hex digits)")]
    BadLength,
    /// A character that is not a hex digit in a hex key.
    #[error("key is not valid hex")]
    BadHex,
    /// A non-ASCII character in an ASCII key.
    #[error("key text is not ASCII")]
    NotAscii,
}

impl KeyError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyError::BadLength => "bad_length",
            KeyError::BadHex => "bad_hex",
            KeyError::NotAscii => "not_ascii",
        }
    }
}

/// Why a buffer could not be encrypted or decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The buffer length is not a multiple of the 16-byte AES block.
    #[error("buffer length is not a multiple of 16")]
    BadLength,
}

impl CryptoError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            CryptoError::BadLength => "bad_length",
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(AES-{}, redacted)", self.bits())
    }
}

impl Key {
    /// Builds a key from 16, 24 or 32 raw bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Key, KeyError> {
        if let Ok(a) = <[u8; 16]>::try_from(b) {
            Ok(Key::Aes128(a))
        } else if let Ok(a) = <[u8; 24]>::try_from(b) {
            Ok(Key::Aes192(a))
        } else if let Ok(a) = <[u8; 32]>::try_from(b) {
            Ok(Key::Aes256(a))
        } else {
            Err(KeyError::BadLength)
        }
    }

    /// Builds a key from 32, 48 or 64 hex digits (either case; no separators or whitespace).
    pub fn from_hex(s: &str) -> Result<Key, KeyError> {
        let s = s.as_bytes();
        if !matches!(s.len(), 32 | 48 | 64) {
            return Err(KeyError::BadLength);
        }
        let mut buf = [0u8; 32];
        let n = s.len() / 2;
        for (out, pair) in buf.iter_mut().zip(s.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (
                pair.first().copied().and_then(hex_val),
                pair.get(1).copied().and_then(hex_val),
            ) else {
                return Err(KeyError::BadHex);
            };
            *out = (hi << 4) | lo;
        }
        Key::from_bytes(buf.get(..n).unwrap_or_default())
    }

    /// Builds a key from 16, 24 or 32 ASCII characters, whose bytes are used as they are
    /// (the form PSA and RS take, e.g. `AAAAAAAAAAAAAAAA`).
    pub fn from_ascii(s: &str) -> Result<Key, KeyError> {
        if !s.is_ascii() {
            return Err(KeyError::NotAscii);
        }
        Key::from_bytes(s.as_bytes())
    }

    /// Key size in bits: 128, 192 or 256.
    #[must_use]
    pub fn bits(&self) -> u16 {
        match self {
            Key::Aes128(_) => 128,
            Key::Aes192(_) => 192,
            Key::Aes256(_) => 256,
        }
    }

    /// The raw key bytes (16, 24 or 32).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Aes128(k) => k,
            Key::Aes192(k) => k,
            Key::Aes256(k) => k,
        }
    }
}

/// Value of one ASCII hex digit, either case.
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decrypts `buf` in place with AES-CBC, zero IV, no padding removal.
///
/// `buf.len()` must be a multiple of 16 (an empty buffer is left as is).
pub fn decrypt_zero_iv(key: &Key, buf: &mut [u8]) -> Result<(), CryptoError> {
    if buf.len() % BLOCK != 0 {
        return Err(CryptoError::BadLength);
    }
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    if !rest.is_empty() {
        return Err(CryptoError::BadLength);
    }
    let iv = Array::from(ZERO_IV);
    match key {
        Key::Aes128(k) => {
            cbc::Decryptor::<aes::Aes128>::new(&Array::from(*k), &iv).decrypt_blocks(blocks);
        }
        Key::Aes192(k) => {
            cbc::Decryptor::<aes::Aes192>::new(&Array::from(*k), &iv).decrypt_blocks(blocks);
        }
        Key::Aes256(k) => {
            cbc::Decryptor::<aes::Aes256>::new(&Array::from(*k), &iv).decrypt_blocks(blocks);
        }
    }
    Ok(())
}

/// Encrypts `buf` in place with AES-CBC, zero IV, no padding added.
///
/// `buf.len()` must be a multiple of 16 (an empty buffer is left as is).
pub fn encrypt_zero_iv(key: &Key, buf: &mut [u8]) -> Result<(), CryptoError> {
    if buf.len() % BLOCK != 0 {
        return Err(CryptoError::BadLength);
    }
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    if !rest.is_empty() {
        return Err(CryptoError::BadLength);
    }
    let iv = Array::from(ZERO_IV);
    match key {
        Key::Aes128(k) => {
            cbc::Encryptor::<aes::Aes128>::new(&Array::from(*k), &iv).encrypt_blocks(blocks);
        }
        Key::Aes192(k) => {
            cbc::Encryptor::<aes::Aes192>::new(&Array::from(*k), &iv).encrypt_blocks(blocks);
        }
        Key::Aes256(k) => {
            cbc::Encryptor::<aes::Aes256>::new(&Array::from(*k), &iv).encrypt_blocks(blocks);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    #[test]
    fn key_forms() {
        let k = Key::from_hex("000102030405060708090a0b0c0d0e0F").expect("hex key");
        assert_eq!(k.bits(), 128);
        assert_eq!(k.as_bytes(), &unhex("000102030405060708090a0b0c0d0e0f")[..]);
        assert_eq!(Key::from_hex(&"ab".repeat(24)).map(|k| k.bits()), Ok(192));
        assert_eq!(Key::from_hex(&"ab".repeat(32)).map(|k| k.bits()), Ok(256));
        assert_eq!(Key::from_hex(&"ab".repeat(15)), Err(KeyError::BadLength));
        assert_eq!(Key::from_hex(&"zz".repeat(16)), Err(KeyError::BadHex));
        assert_eq!(Key::from_hex(&"é".repeat(16)), Err(KeyError::BadHex));
        assert_eq!(
            Key::from_ascii("AAAAAAAAAAAAAAAA").map(|k| k.as_bytes().to_vec()),
            Ok(vec![b'A'; 16])
        );
        assert_eq!(Key::from_ascii("AAAA"), Err(KeyError::BadLength));
        assert_eq!(Key::from_ascii("ééééééééé"), Err(KeyError::NotAscii));
        assert_eq!(Key::from_bytes(&[0; 17]), Err(KeyError::BadLength));
        assert_eq!(Key::from_bytes(&[]), Err(KeyError::BadLength));
        assert_eq!(KeyError::BadHex.as_str(), "bad_hex");
    }

    #[test]
    fn debug_is_redacted() {
        let k = Key::from_ascii("SECRETSECRETSECRETSECRETSECRET12").expect("key");
        let s = format!("{k:?}");
        assert_eq!(s, "Key(AES-256, redacted)");
        assert!(!s.contains("SECRET"));
    }

    #[test]
    fn fips197_cbc_known_answers() {
        // NIST SP 800-38A F.2.1/F.2.3/F.2.5 use a non-zero IV; with a zero IV the first block
        // is plain AES-ECB, so check FIPS-197 C.1-C.3 single-block vectors.
        let pt = unhex("00112233445566778899aabbccddeeff");
        for (key, ct) in [
            (
                "000102030405060708090a0b0c0d0e0f",
                "69c4e0d86a7b0430d8cdb78070b4c55a",
            ),
            (
                "000102030405060708090a0b0c0d0e0f1011121314151617",
                "dda97ca4864cdfe06eaf70a0ec0d7191",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "8ea2b7ca516745bfeafc49904b496089",
            ),
        ] {
            let key = Key::from_hex(key).expect("key");
            let mut buf = pt.clone();
            encrypt_zero_iv(&key, &mut buf).expect("encrypt");
            assert_eq!(buf, unhex(ct));
            decrypt_zero_iv(&key, &mut buf).expect("decrypt");
            assert_eq!(buf, pt);
        }
    }

    #[test]
    fn multi_block_round_trip_and_chaining() {
        let key = Key::from_bytes(&[7u8; 24]).expect("key");
        let plain = [b'x'; 64];
        let mut buf = plain;
        encrypt_zero_iv(&key, &mut buf).expect("encrypt");
        // CBC: identical plaintext blocks give different ciphertext blocks.
        assert_ne!(buf[..16], buf[16..32]);
        decrypt_zero_iv(&key, &mut buf).expect("decrypt");
        assert_eq!(buf, plain);
    }

    #[test]
    fn bad_lengths() {
        let key = Key::from_bytes(&[0u8; 16]).expect("key");
        let mut buf = [0u8; 17];
        assert_eq!(decrypt_zero_iv(&key, &mut buf), Err(CryptoError::BadLength));
        assert_eq!(
            encrypt_zero_iv(&key, &mut buf[..15]),
            Err(CryptoError::BadLength)
        );
        assert_eq!(decrypt_zero_iv(&key, &mut []), Ok(()));
    }
}
