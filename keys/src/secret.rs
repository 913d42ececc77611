//! Containers for key material: zeroized on drop, redacted in `Debug`, never `Display`ed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Length of a root key and of every derived key, in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// A 256-bit root key version's secret. Zeroized when dropped; `Debug` prints `[redacted]`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootKey([u8; KEY_LEN]);

impl RootKey {
    /// Draws a fresh root key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut key = RootKey([0; KEY_LEN]);
        getrandom::fill(&mut key.0).map_err(|err| Error::Random(err.to_string()))?;
        Ok(key)
    }

    /// Wraps raw key bytes (tests and known-answer vectors).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        RootKey(bytes)
    }

    /// Decodes a base64 root key (standard alphabet, padded or not). The error never repeats
    /// the input.
    pub fn from_base64(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let mut decoded = Zeroizing::new(Vec::with_capacity(KEY_LEN + 3));
        STANDARD
            .decode_vec(text, &mut decoded)
            .or_else(|_| {
                decoded.clear();
                STANDARD_NO_PAD.decode_vec(text, &mut decoded)
            })
            .map_err(|_| "not valid base64".to_string())?;
        if decoded.len() != KEY_LEN {
            return Err(format!(
                "decodes to {} bytes, a root key is {KEY_LEN} bytes (256 bits)",
                decoded.len()
            ));
        }
        let mut key = RootKey([0; KEY_LEN]);
        key.0.copy_from_slice(&decoded);
        Ok(key)
    }

    /// The key encoded as padded standard base64, in a zeroizing string.
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(KEY_LEN * 4 / 3 + 4));
        STANDARD.encode_string(self.0, &mut out);
        out
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_redacted_debug() {
        let key = RootKey::generate().unwrap();
        let text = key.to_base64();
        let back = RootKey::from_base64(&text).unwrap();
        assert_eq!(key.as_bytes(), back.as_bytes());
        let no_pad = text.trim_end_matches('=');
        assert_eq!(
            RootKey::from_base64(no_pad).unwrap().as_bytes(),
            key.as_bytes()
        );
        let debug = format!("{key:?}");
        assert_eq!(debug, "RootKey([redacted])");
        assert!(!debug.contains(text.as_str()));
    }

    #[test]
    fn wrong_length_and_bad_base64_are_refused_without_echo() {
        let err = RootKey::from_base64("AAAA").unwrap_err();
        assert!(err.contains("3 bytes"), "{err}");
        let err = RootKey::from_base64("not base64 at all!").unwrap_err();
        assert_eq!(err, "not valid base64");
    }
}
