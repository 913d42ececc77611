//! Envelopes through the public API: round trips in every mode, the distinct refusal of
//! tampered, truncated, moved, foreign and retired values, and rotation.

use pgseal_keys::envelope::OVERHEAD;
use pgseal_keys::{
    Alphabet, Domain, Error, Keyring, KeyringFile, Mode, Sealer, is_sealed, is_sealed_text,
};
use proptest::prelude::*;

/// A keyring with fixed keys, so header-check collisions cannot make a test flaky.
fn fixed_keyring(versions: &[(u32, &str, u8)]) -> Keyring {
    let mut text = String::from("format = 1\n");
    for (number, state, byte) in versions {
        text.push_str(&format!(
            "[[version]]\nnumber = {number}\nstate = \"{state}\"\ncreated = \"2025-01-01T00:00:00Z\"\n"
        ));
        if *state != "retired" {
            let key = pgseal_keys::RootKey::from_bytes([*byte; 32]).to_base64();
            text.push_str(&format!("key = \"{}\"\n", &*key));
        }
    }
    Keyring::from_toml_str(&text).unwrap()
}

fn patients_nir() -> Domain {
    Domain::column("public", "patients", "nir").unwrap()
}

fn sealer() -> Sealer {
    fixed_keyring(&[(1, "active", 1)]).sealer(&patients_nir())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_envelope_mode_round_trips(plaintext in prop::collection::vec(any::<u8>(), 0..2048)) {
        let s = sealer();
        for mode in [Mode::Randomized, Mode::Deterministic] {
            let sealed = s.seal(mode, &plaintext).unwrap();
            prop_assert_eq!(sealed.as_bytes().len(), plaintext.len() + OVERHEAD);
            prop_assert_eq!(sealed.mode(), mode);
            prop_assert_eq!(sealed.key_version(), 1);
            prop_assert!(is_sealed(sealed.as_bytes()));
            prop_assert_eq!(&*s.open(sealed.as_bytes()).unwrap(), &plaintext);
            let text = sealed.to_armored();
            prop_assert!(is_sealed_text(&text));
            prop_assert!(!text.contains(['\'', '"', '\\', ',', '\t', '\n', '\r', ' ']));
            prop_assert_eq!(&*s.open_armored(&text).unwrap(), &plaintext);
        }
    }

    #[test]
    fn deterministic_is_deterministic_and_randomized_is_not(
        a in prop::collection::vec(any::<u8>(), 0..64),
        b in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let s = sealer();
        prop_assert_eq!(s.seal_deterministic(&a).unwrap(), s.seal_deterministic(&a).unwrap());
        prop_assert_eq!(
            a == b,
            s.seal_deterministic(&a).unwrap() == s.seal_deterministic(&b).unwrap()
        );
        prop_assert_ne!(s.seal_randomized(&a).unwrap(), s.seal_randomized(&a).unwrap());
    }

    #[test]
    fn digit_tokens_round_trip(input in "[0-9]{6,60}") {
        let s = sealer();
        let token = s.tokenize_digits(&input).unwrap();
        prop_assert_eq!(token.len(), input.len());
        prop_assert!(token.bytes().all(|c| c.is_ascii_digit()));
        prop_assert_eq!(s.detokenize_digits(&token).unwrap(), input);
    }

    #[test]
    fn alphanumeric_tokens_round_trip(input in "[0-9A-Za-z]{4,40}", upper in "[0-9A-Z]{4,40}") {
        let s = sealer();
        let token = s.tokenize_alnum(&input).unwrap();
        prop_assert_eq!(token.len(), input.len());
        prop_assert!(token.bytes().all(|c| c.is_ascii_alphanumeric()));
        prop_assert_eq!(s.detokenize_alnum(&token).unwrap(), input);
        let token = s.tokenize(Alphabet::UpperAlphanumeric, &upper).unwrap();
        prop_assert!(token.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        prop_assert_eq!(s.detokenize(Alphabet::UpperAlphanumeric, &token).unwrap(), upper);
    }

    #[test]
    fn pseudonyms_are_stable_compact_and_domain_bound(value in prop::collection::vec(any::<u8>(), 0..256)) {
        let ring = fixed_keyring(&[(1, "active", 1)]);
        let a = ring.sealer(&Domain::shared("patient").unwrap());
        let b = ring.sealer(&Domain::shared("doctor").unwrap());
        let p = a.pseudonym(&value);
        prop_assert_eq!(p.len(), 22);
        prop_assert!(p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        prop_assert_eq!(&p, &a.pseudonym(&value));
        prop_assert_ne!(&p, &b.pseudonym(&value));
    }
}

#[test]
fn shared_domains_seal_equally_across_columns() {
    let ring = fixed_keyring(&[(1, "active", 1)]);
    let shared = Domain::shared("patient_id").unwrap();
    let (x, y) = (ring.sealer(&shared), ring.sealer(&shared));
    assert_eq!(
        x.seal_deterministic(b"P-42").unwrap(),
        y.seal_deterministic(b"P-42").unwrap()
    );
    let other = ring.sealer(&Domain::column("public", "visits", "patient_id").unwrap());
    assert_ne!(
        x.seal_deterministic(b"P-42").unwrap().as_bytes()[13..],
        other.seal_deterministic(b"P-42").unwrap().as_bytes()[13..]
    );
    assert_eq!(
        x.tokenize_digits("123456789").unwrap(),
        y.tokenize_digits("123456789").unwrap()
    );
}

#[test]
fn tampered_values_are_rejected() {
    let s = sealer();
    for mode in [Mode::Randomized, Mode::Deterministic] {
        let sealed = s.seal(mode, b"1 85 06 75 123 456").unwrap().into_bytes();
        // Every nonce, ciphertext and tag byte.
        for i in 13..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(s.open(&bad), Err(Error::Tampered)), "byte {i}");
        }
        // Header bytes, field by field.
        let flip = |i: usize, with: u8| {
            let mut bad = sealed.clone();
            bad[i] ^= with;
            s.open(&bad).unwrap_err()
        };
        assert!(matches!(flip(0, 1), Error::Malformed(_)));
        assert!(matches!(flip(3, 3), Error::UnsupportedFormat(2)));
        assert!(matches!(flip(4, 3), Error::Tampered)); // 1 <-> 2: the other mode's key
        assert!(matches!(flip(4, 4), Error::Malformed(_)));
        assert!(matches!(flip(8, 2), Error::UnknownKeyVersion(3)));
        assert!(matches!(flip(9, 1), Error::WrongKey(1)));
        assert!(matches!(flip(12, 1), Error::WrongDomain(_)));
    }
    // Armored values: a changed character is caught by base64 or by authentication.
    let text = s.seal_randomized(b"secret").unwrap().to_armored();
    for i in 5..text.len() {
        let mut bad = text.clone().into_bytes();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(s.open_armored(&bad).is_err(), "char {i}");
    }
}

#[test]
fn truncated_values_are_rejected() {
    let s = sealer();
    let sealed = s.seal_deterministic(b"0612345678").unwrap().into_bytes();
    for len in 0..sealed.len() {
        let err = s.open(&sealed[..len]).unwrap_err();
        match len {
            0..=3 => assert!(matches!(err, Error::Malformed(_)), "{len}: {err}"),
            4..OVERHEAD => assert!(
                matches!(err, Error::Truncated { len: l, min: OVERHEAD } if l == len),
                "{len}: {err}"
            ),
            // Cut after the header: only authentication can notice.
            _ => assert!(matches!(err, Error::Tampered), "{len}: {err}"),
        }
    }
    let text = s.seal_deterministic(b"0612345678").unwrap().to_armored();
    assert!(matches!(
        s.open_armored(&text[..21]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        s.open_armored("pgs1:"),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn values_moved_to_another_domain_are_rejected() {
    let ring = fixed_keyring(&[(1, "active", 1)]);
    let nir = ring.sealer(&patients_nir());
    let phone = ring.sealer(&Domain::column("public", "patients", "phone").unwrap());
    for sealed in [
        nir.seal_randomized(b"x").unwrap(),
        nir.seal_deterministic(b"x").unwrap(),
    ] {
        let err = phone.open(sealed.as_bytes()).unwrap_err();
        assert!(matches!(&err, Error::WrongDomain(d) if d == "column public.patients.phone"));
        assert_eq!(
            err.to_string(),
            "sealed value belongs to another domain than column public.patients.phone"
        );
    }
}

#[test]
fn values_from_another_keyring_are_rejected() {
    let ours = fixed_keyring(&[(1, "active", 1)]).sealer(&patients_nir());
    let theirs = fixed_keyring(&[(1, "active", 2)]).sealer(&patients_nir());
    let sealed = theirs.seal_deterministic(b"x").unwrap();
    assert!(matches!(
        ours.open(sealed.as_bytes()),
        Err(Error::WrongKey(1))
    ));
    let newer = fixed_keyring(&[(1, "decrypt-only", 1), (2, "active", 3)]).sealer(&patients_nir());
    let sealed = newer.seal_randomized(b"x").unwrap();
    assert!(matches!(
        ours.open(sealed.as_bytes()),
        Err(Error::UnknownKeyVersion(2))
    ));
}

#[test]
fn rotation_keeps_older_values_readable_and_retirement_refuses_them() {
    let mut file = KeyringFile::generate().unwrap();
    let v1 = file.clone_keyring_for_test();
    let old = v1.sealer(&patients_nir());
    let old_random = old.seal_randomized(b"1850675123456").unwrap();
    let old_det = old.seal_deterministic(b"1850675123456").unwrap();

    assert_eq!(file.rotate().unwrap(), 2);
    let v2 = file.clone_keyring_for_test();
    let new = v2.sealer(&patients_nir());
    assert_eq!(new.active_version(), 2);
    assert_eq!(&*new.open(old_random.as_bytes()).unwrap(), b"1850675123456");
    assert_eq!(&*new.open(old_det.as_bytes()).unwrap(), b"1850675123456");
    let new_det = new.seal_deterministic(b"1850675123456").unwrap();
    assert_eq!(new_det.key_version(), 2);
    assert_ne!(new_det, old_det);

    // Lookups after rotation: one form per readable version, active first.
    let forms = new.sealed_forms_all_versions(b"1850675123456").unwrap();
    assert_eq!(forms, vec![new_det.clone(), old_det.clone()]);

    // Tokens follow the token version; pinning keeps pre-rotation tokens meaningful.
    let old_token = old.tokenize_nir("255081416802538").unwrap();
    let pinned = new.with_token_version(1).unwrap();
    assert_eq!(
        pinned.detokenize_nir(&old_token).unwrap(),
        "255081416802538"
    );
    assert_eq!(pinned.pseudonym(b"a"), old.pseudonym(b"a"));
    assert_eq!(new.token_version(), 2);

    file.retire(1).unwrap();
    let v3 = file.clone_keyring_for_test();
    let after = v3.sealer(&patients_nir());
    assert!(matches!(
        after.open(old_det.as_bytes()),
        Err(Error::RetiredKeyVersion(1))
    ));
    assert!(matches!(
        after.open(old_random.as_bytes()),
        Err(Error::RetiredKeyVersion(1))
    ));
    assert_eq!(&*after.open(new_det.as_bytes()).unwrap(), b"1850675123456");
    assert_eq!(
        after.sealed_forms_all_versions(b"1850675123456").unwrap(),
        vec![new_det]
    );
    assert!(matches!(
        after.with_token_version(1),
        Err(Error::UnusableKeyVersion {
            version: 1,
            reason: "it is retired"
        })
    ));
    assert!(matches!(
        after.with_token_version(7),
        Err(Error::UnusableKeyVersion { .. })
    ));
}

#[test]
fn plaintext_is_not_mistaken_for_sealed() {
    for text in [
        "",
        "hello",
        "pgs1",
        "pgs1:",
        "pgs1:hello world",
        "1850675123456",
    ] {
        assert!(!is_sealed_text(text), "{text}");
        assert!(!is_sealed(text.as_bytes()), "{text}");
    }
    let s = sealer();
    let sealed = s.seal_randomized(b"").unwrap();
    assert!(is_sealed(sealed.as_bytes()));
    assert!(!is_sealed_text(
        std::str::from_utf8(&sealed.as_bytes()[..3]).unwrap()
    ));
}

#[test]
fn debug_output_never_shows_keys() {
    let ring = fixed_keyring(&[(1, "decrypt-only", 1), (2, "active", 2)]);
    let s = ring.sealer(&patients_nir());
    let debug = format!("{ring:?} {s:?}");
    assert!(debug.contains("[redacted]"), "{debug}");
    let key = pgseal_keys::RootKey::from_bytes([2; 32]).to_base64();
    assert!(!debug.contains(&key[..8]), "{debug}");
}

/// Test-only conversion: a runtime keyring from the document's TOML, leaving the document
/// usable for further edits.
trait CloneKeyring {
    fn clone_keyring_for_test(&self) -> Keyring;
}

impl CloneKeyring for KeyringFile {
    fn clone_keyring_for_test(&self) -> Keyring {
        Keyring::from_toml_str(&self.to_toml()).unwrap()
    }
}

#[test]
fn keyrings_and_sealers_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Keyring>();
    assert_send_sync::<Sealer>();

    let ring = fixed_keyring(&[(1, "decrypt-only", 1), (2, "active", 2)]);
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let domain = Domain::shared(&format!("d{}", t % 2)).unwrap();
                (0..200u32)
                    .map(|i| {
                        let sealer = ring.sealer(&domain);
                        let value = [t % 2, i as u8];
                        let sealed = sealer.seal_deterministic(&value).unwrap();
                        assert_eq!(&*sealer.open(sealed.as_bytes()).unwrap(), &value);
                        sealed
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Threads sealing the same values in the same domain agree byte for byte.
    assert_eq!(results[0], results[2]);
    assert_eq!(results[1], results[3]);
    assert_ne!(results[0], results[1]);
    let d0 = ring.sealer(&Domain::shared("d0").unwrap());
    for sealed in &results[0] {
        assert_eq!(sealed.key_version(), 2);
        assert!(d0.open(sealed.as_bytes()).is_ok());
    }
    assert!(ring.sealer(&Domain::shared("d0").unwrap()).ptr_eq(&d0));
}
