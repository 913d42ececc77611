//! The audit-chain key: derived per root version, stable, distinct across keyrings and
//! versions, redacted in `Debug`, and verified in constant time.

use pgseal_keys::{AUDIT_MAC_LEN, Error, Keyring, KeyringFile, RootKey};

fn keyring(byte: u8) -> Keyring {
    let key = RootKey::from_bytes([byte; 32]).to_base64();
    Keyring::from_root_key_str(&key).unwrap()
}

#[test]
fn audit_key_is_stable_per_root_and_macs_verify() {
    let a = keyring(1).audit_key();
    let again = keyring(1).audit_key();
    let other = keyring(2).audit_key();
    assert_eq!(a.version(), 1);
    let tag = a.mac(&[b"prev", b"line"]);
    assert_eq!(tag.len(), AUDIT_MAC_LEN);
    // The same root derives the same key; the MAC covers the concatenation of the parts.
    assert_eq!(again.mac(&[b"prevline"]), tag);
    assert!(a.verify(&[b"prev", b"line"], &tag));
    assert!(!a.verify(&[b"prev", b"linE"], &tag));
    assert!(!a.verify(&[b"prev", b"line"], &tag[..31]));
    // Another root key: another audit key.
    assert_ne!(other.mac(&[b"prevline"]), tag);
    assert!(!other.verify(&[b"prev", b"line"], &tag));
    let debug = format!("{a:?}");
    assert_eq!(debug, "AuditKey(version 1, [redacted])");
}

#[test]
fn each_version_has_its_own_audit_key_until_retired() {
    let mut file = KeyringFile::generate().unwrap();
    let first = file.active_version();
    let copy = |file: &KeyringFile| KeyringFile::from_toml_str(&file.to_toml()).unwrap();
    let v1 = copy(&file).into_keyring().audit_key();
    file.rotate().unwrap();
    let ring = copy(&file).into_keyring();
    let v2 = ring.audit_key();
    assert_eq!(v2.version(), first + 1);
    assert_ne!(v1.mac(&[b"x"]), v2.mac(&[b"x"]));
    // The old version's key is still there to verify old logs.
    let old = ring.audit_key_version(first).unwrap();
    assert_eq!(old.mac(&[b"x"]), v1.mac(&[b"x"]));
    assert!(matches!(
        ring.audit_key_version(99),
        Err(Error::UnusableKeyVersion { version: 99, .. })
    ));
    file.retire(first).unwrap();
    let err = file.into_keyring().audit_key_version(first).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("key version {first} cannot be used: it is retired")
    );
}
