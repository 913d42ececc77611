//! Pseudonyms: irreversible, stable per domain and key version, compact.
//!
//! `pseudonym = base64url-nopad(HMAC-SHA256(pseudonym key, value)[..16])`: 22 characters from
//! `A–Z a–z 0–9 - _`. The pseudonym key is derived per domain, so the same value has the same
//! pseudonym in every column of a shared domain (counts and joins still work) and unrelated
//! pseudonyms across domains. 128 bits make accidental collisions negligible (about 2⁻⁶⁴ after
//! 2³² distinct values). Without the key nothing links a pseudonym to its value; with the key,
//! low-entropy values (dates, small integers) can be recovered by enumeration, like any keyed
//! hash — the key never leaves pgseal.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::secret::KEY_LEN;

/// Length of a pseudonym, in characters.
pub const PSEUDONYM_LEN: usize = 22;

/// A keyed pseudonym function.
#[derive(Clone)]
pub(crate) struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    /// Keys the HMAC.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Pseudonymizer {
            mac: Hmac::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    /// The pseudonym of `value`.
    pub(crate) fn pseudonym(&self, value: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&digest[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_hmac_sha256_truncated() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let full = mac.finalize().into_bytes();
        assert_eq!(
            full.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let p = Pseudonymizer::new(&[5; 32]);
        let a = p.pseudonym(b"1850675123456");
        assert_eq!(a.len(), PSEUDONYM_LEN);
        assert_eq!(a, p.pseudonym(b"1850675123456"));
        assert_ne!(a, p.pseudonym(b"1850675123457"));
        assert_ne!(a, Pseudonymizer::new(&[6; 32]).pseudonym(b"1850675123456"));
    }
}
