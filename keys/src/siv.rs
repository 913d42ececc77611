//! AES-256-GCM-SIV (RFC 8452), as the envelope uses it: in place, tag after the ciphertext.
//!
//! A thin wrapper over the `aes-gcm-siv` crate so the envelope code appends straight into its
//! output buffer (one allocation per sealed value) and so the RFC's known-answer vectors run
//! through exactly the calls the envelope makes.

use aes::Aes256Enc;
use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{AesGcmSiv, Nonce, Tag};

use crate::envelope::{NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::secret::KEY_LEN;

/// AES-256-GCM-SIV over the encryption-only AES-256: GCM-SIV never runs AES backwards, so the
/// per-value key it derives needs no decryption key schedule (the `Aes256GcmSiv` alias would
/// compute one for every value sealed or opened).
type Aes256EncGcmSiv = AesGcmSiv<Aes256Enc>;

/// A key-scheduled AES-256-GCM-SIV instance. The `aes` crate zeroizes its round keys on drop.
#[derive(Clone)]
pub(crate) struct Siv {
    cipher: Aes256EncGcmSiv,
}

impl Siv {
    /// Schedules a 256-bit key.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Siv {
            cipher: Aes256EncGcmSiv::new_from_slice(key)
                .expect("AES-256-GCM-SIV takes 32-byte keys"),
        }
    }

    /// Encrypts `buf[at..]` in place and appends the 16-byte tag.
    pub(crate) fn seal_tail(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        at: usize,
    ) -> Result<()> {
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, (&mut buf[at..]).into())
            .map_err(|_| Error::Malformed("value exceeds AES-GCM-SIV's length limit"))?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts `ciphertext ‖ tag` in place: on success the plaintext is the first
    /// `body.len() - 16` bytes of `body` (its length is returned); on failure `body` holds the
    /// ciphertext again.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<usize> {
        let split = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::Malformed("no room for the authentication tag"))?;
        let (ciphertext, tag) = body.split_at_mut(split);
        let tag = Tag::try_from(&tag[..]).expect("tag slice is 16 bytes");
        self.cipher
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, ciphertext.into(), &tag)
            .map_err(|_| Error::Tampered)?;
        Ok(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Siv {
        /// Decrypts `ciphertext ‖ tag` into a new buffer.
        fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], body: &[u8]) -> Result<Vec<u8>> {
            let mut out = body.to_vec();
            let len = self.open_in_place(nonce, aad, &mut out)?;
            out.truncate(len);
            Ok(out)
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8452 appendix C.2 (AEAD_AES_256_GCM_SIV) and C.3 (counter wrap): key, nonce, AAD,
    /// plaintext, ciphertext ‖ tag.
    const VECTORS: &[[&str; 5]] = &[
        [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "",
            "",
            "07f5f4169bbf55a8400cd47ea6fd400f",
        ],
        [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "",
            "0100000000000000",
            "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28",
        ],
        [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "01",
            "0200000000000000",
            "1de22967237a813291213f267e3b452f02d01ae33e4ec854",
        ],
        [
            "bae8e37fc83441b16034566b7a806c46bb91c3c5aedb64a6c590bc84d1a5e269",
            "e4b47801afc0577e34699b9e",
            "4fbdc66f14",
            "671fdd",
            "0eaccb93da9bb81333aee0c785b240d319719d",
        ],
        [
            "9745b3d1ae06556fb6aa7890bebc18fe6b3db4da3d57aa94842b9803a96e07fb",
            "6de71860f762ebfbd08284e4",
            "f37de21c7ff901cfe8a69615a93fdf7a98cad481796245709f",
            "21702de0de18baa9c9596291b08466",
            "793576dfa5c0f88729a7ed3c2f1bffb3080d28f6ebb5d3648ce97bd5ba67fd",
        ],
        [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000",
            "",
            "000000000000000000000000000000004db923dc793ee6497c76dcc03a98e108",
            "f3f80f2cf0cb2dd9c5984fcda908456cc537703b5ba70324a6793a7bf218d3ea\
             ffffffff000000000000000000000000",
        ],
    ];

    #[test]
    fn rfc8452_vectors() {
        for [key, nonce, aad, plaintext, expected] in VECTORS {
            let siv = Siv::new(&hex(key).try_into().unwrap());
            let nonce: [u8; NONCE_LEN] = hex(nonce).try_into().unwrap();
            let (aad, plaintext, expected) = (hex(aad), hex(plaintext), hex(expected));
            // Sealed after a 3-byte prefix, as the envelope seals after its header.
            let mut buf = b"hdr".to_vec();
            buf.extend_from_slice(&plaintext);
            siv.seal_tail(&nonce, &aad, &mut buf, 3).unwrap();
            assert_eq!(&buf[..3], b"hdr");
            assert_eq!(&buf[3..], &expected[..]);
            assert_eq!(siv.open(&nonce, &aad, &expected).unwrap(), plaintext);
            let mut bad = expected.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(matches!(siv.open(&nonce, &aad, &bad), Err(Error::Tampered)));
            assert!(matches!(
                siv.open(&nonce, b"other aad", &expected),
                Err(Error::Tampered)
            ));
        }
    }
}
