//! The audit-trail key: an HMAC-SHA256 key that chains the proxy's audit events, so that a
//! removed, reordered or edited line is detected.
//!
//! It is derived from a root key version with HKDF, `info = "pgseal/v1/audit-chain"` (no domain:
//! one audit key per root version). The audit log records the version it was written under, so
//! a file written before a rotation still verifies while that version is readable; once the
//! version is retired, its audit files can no longer be verified.

use std::fmt;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::secret::KEY_LEN;

/// Length of an audit MAC, in bytes (HMAC-SHA256, untruncated).
pub const AUDIT_MAC_LEN: usize = 32;

/// The HMAC-SHA256 key of the audit chain for one root key version. Zeroized when dropped;
/// `Debug` prints only the version.
#[derive(Clone)]
pub struct AuditKey {
    version: u32,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl AuditKey {
    pub(crate) fn new(version: u32, key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        AuditKey { version, key }
    }

    /// The root key version this key is derived from (recorded in the audit log).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; AUDIT_MAC_LEN] {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `parts`, compared in constant time (a tag of the wrong length
    /// is simply wrong).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.mac(parts);
        tag.len() == AUDIT_MAC_LEN && bool::from(expected.ct_eq(tag))
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey(version {}, [redacted])", self.version)
    }
}
