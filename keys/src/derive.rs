//! HKDF-SHA256 key derivation: one root key version → one key per purpose and domain.
//!
//! `PRK = HKDF-Extract(salt = "pgseal/v1/hkdf-salt", IKM = root key)` is computed once per root
//! version; every key is then `HKDF-Expand(PRK, info, 32)` with
//! `info = "pgseal/v1/" ‖ purpose ‖ "/" ‖ domain label` (see [`Purpose`] for the labels and
//! [`crate::Domain`] for domain labels). Purposes are fixed ASCII words without `/`, so two
//! different (purpose, domain) pairs never share an `info`. The root's key check (a 16-bit
//! fingerprint stored in envelopes to tell "another keyring" from "tampered") uses
//! `info = "pgseal/v1/key-check"`, with no domain.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::domain::Domain;
use crate::secret::{KEY_LEN, RootKey};

/// Salt of the HKDF-Extract step. Root keys are uniformly random, so a fixed public salt only
/// separates pgseal's use of them from any other.
const SALT: &[u8] = b"pgseal/v1/hkdf-salt";
/// Prefix of every `info` string.
const INFO_PREFIX: &[u8] = b"pgseal/v1/";

/// What a derived key is for. Each purpose has its own HKDF `info` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Purpose {
    /// AES-256-GCM-SIV key for randomized envelopes.
    Randomized,
    /// AES-256-GCM-SIV key for deterministic envelopes.
    Deterministic,
    /// HMAC-SHA256 key of the PRF that derives deterministic nonces from plaintexts.
    DeterministicNonce,
    /// AES-256 key of FF1 (digits, alphanumerics and NIR tokens).
    Tokenization,
    /// HMAC-SHA256 key of pseudonyms.
    Pseudonym,
    /// Key of the 16-bit domain check stored in envelope headers.
    DomainCheck,
    /// HMAC-SHA256 key of search tokens ([`crate::search`]).
    Search,
}

impl Purpose {
    /// The label that goes into HKDF's `info`.
    pub(crate) fn label(self) -> &'static [u8] {
        match self {
            Purpose::Randomized => b"randomized",
            Purpose::Deterministic => b"deterministic",
            Purpose::DeterministicNonce => b"deterministic-nonce",
            Purpose::Tokenization => b"tokenization",
            Purpose::Pseudonym => b"pseudonym",
            Purpose::DomainCheck => b"domain-check",
            Purpose::Search => b"search",
        }
    }
}

/// The HKDF state of one root key version: its PRK, ready to expand.
pub(crate) struct Deriver {
    hkdf: Hkdf<Sha256>,
}

impl Deriver {
    /// Runs HKDF-Extract over a root key.
    pub(crate) fn new(root: &RootKey) -> Self {
        let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(SALT), root.as_bytes());
        prk.as_mut_slice().zeroize();
        Deriver { hkdf }
    }

    /// The 256-bit key for `purpose` in `domain`.
    pub(crate) fn key(&self, purpose: Purpose, domain: &Domain) -> Zeroizing<[u8; KEY_LEN]> {
        let mut okm = Zeroizing::new([0u8; KEY_LEN]);
        self.hkdf
            .expand_multi_info(
                &[
                    INFO_PREFIX,
                    purpose.label(),
                    b"/",
                    domain.label().as_bytes(),
                ],
                okm.as_mut(),
            )
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }

    /// The key of the audit chain (HMAC-SHA256), `info = "pgseal/v1/audit-chain"`: one per root
    /// version, with no domain. No `(purpose, domain)` info can collide with it, since theirs
    /// always hold a `/` after the purpose.
    pub(crate) fn audit_key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        let mut okm = Zeroizing::new([0u8; KEY_LEN]);
        self.hkdf
            .expand_multi_info(&[INFO_PREFIX, b"audit-chain"], okm.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }

    /// The root version's 16-bit key check: it tells a value sealed by another keyring apart
    /// from a tampered one without revealing anything usable about the key.
    pub(crate) fn key_check(&self) -> [u8; 2] {
        let mut okm = [0u8; 2];
        self.hkdf
            .expand_multi_info(&[INFO_PREFIX, b"key-check"], &mut okm)
            .expect("2 bytes is a valid HKDF-SHA256 output length");
        okm
    }
}

/// Plain HKDF-SHA256 (extract then expand), exactly as [`Deriver`] runs it; exposed to the
/// crate's tests so RFC 5869's vectors exercise the same calls.
#[cfg(test)]
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) -> [u8; 32] {
    let (prk, hkdf) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    hkdf.expand_multi_info(&[info], okm)
        .expect("valid output length");
    let mut out = [0u8; 32];
    out.copy_from_slice(&prk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5869, appendix A, test cases 1–3 (the SHA-256 ones).
    #[test]
    fn rfc5869_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "000102030405060708090a0b0c",
                "f0f1f2f3f4f5f6f7f8f9",
                "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
                 34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
                 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
                 404142434445464748494a4b4c4d4e4f",
                "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
                 808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
                 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
                 d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
                 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                 59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                 cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "",
                "",
                "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d\
                 9d201395faa4b61a96c8",
            ),
        ];
        for (ikm, salt, info, prk, okm) in cases {
            let want_okm = hex(&okm.replace(' ', ""));
            let mut got_okm = vec![0u8; want_okm.len()];
            let got_prk = hkdf_sha256(
                &hex(salt),
                &hex(&ikm.replace(' ', "")),
                &hex(info),
                &mut got_okm,
            );
            assert_eq!(got_prk.to_vec(), hex(prk));
            assert_eq!(got_okm, want_okm);
        }
    }

    #[test]
    fn purposes_and_domains_give_distinct_keys() {
        let deriver = Deriver::new(&RootKey::from_bytes([7; 32]));
        let a = Domain::column("public", "patients", "nir").unwrap();
        let b = Domain::shared("patient_id").unwrap();
        let purposes = [
            Purpose::Randomized,
            Purpose::Deterministic,
            Purpose::DeterministicNonce,
            Purpose::Tokenization,
            Purpose::Pseudonym,
            Purpose::DomainCheck,
            Purpose::Search,
        ];
        let mut seen = std::collections::HashSet::new();
        for domain in [&a, &b] {
            for purpose in purposes {
                assert!(seen.insert(*deriver.key(purpose, domain)));
            }
        }
        // Deterministic: the same inputs derive the same key.
        assert_eq!(
            *deriver.key(Purpose::Randomized, &a),
            *Deriver::new(&RootKey::from_bytes([7; 32])).key(Purpose::Randomized, &a)
        );
        // The audit key is none of them, and is the documented construction too.
        let audit = deriver.audit_key();
        assert!(seen.insert(*audit));
        let mut okm = [0u8; 32];
        hkdf_sha256(SALT, &[7; 32], b"pgseal/v1/audit-chain", &mut okm);
        assert_eq!(*audit, okm);
        // And it is the documented HKDF construction.
        let mut okm = [0u8; 32];
        hkdf_sha256(
            SALT,
            &[7; 32],
            b"pgseal/v1/randomized/column:public.patients.nir",
            &mut okm,
        );
        assert_eq!(*deriver.key(Purpose::Randomized, &a), okm);
    }
}
