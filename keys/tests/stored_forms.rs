//! Known answers for what pgseal writes into a database: tokens, deterministic envelopes and
//! pseudonyms of fixed values under a fixed root key, and a randomized envelope that must keep
//! opening. Deployed databases hold these forms, so any change to the code behind them (a faster
//! FF1 adapter, another AES-GCM-SIV backend) must leave every one of them unchanged, or stored
//! values would stop opening and lookups would stop matching. The expected values were produced
//! by the implementation of 2026-11 (fpe's FF1 over `aes::Aes256`, RustCrypto's AES-256-GCM-SIV).

use pgseal_keys::{Alphabet, Domain, Error, Keyring, RootKey, Sealer};

/// A keyring of fixed root keys: (version, state, the byte the key repeats).
fn keyring(versions: &[(u32, &str, u8)]) -> Keyring {
    let mut text = String::from("format = 1\n");
    for (number, state, byte) in versions {
        let key = RootKey::from_bytes([*byte; 32]).to_base64();
        text.push_str(&format!(
            "[[version]]\nnumber = {number}\nstate = \"{state}\"\n\
             created = \"2025-01-01T00:00:00Z\"\nkey = \"{}\"\n",
            &*key
        ));
    }
    Keyring::from_toml_str(&text).unwrap()
}

fn sealer(column: &str) -> Sealer {
    keyring(&[(1, "active", 0x5e)]).sealer(&Domain::column("public", "patients", column).unwrap())
}

#[test]
fn nir_tokens_are_unchanged() {
    let nir = sealer("nir");
    // Metropolitan, both Corsican departments, overseas (97x), a woman, a pseudo-month.
    for (value, token) in [
        ("185057800608491", "104022856519128"),
        ("299122A00401228", "225024432646479"),
        ("185029712345613", "133065619737838"),
        ("285503501203446", "208826001459627"),
        ("175016212300144", "152021395330207"),
        ("299122B00401255", "273024741582547"),
    ] {
        assert_eq!(nir.tokenize_nir(value).unwrap(), token, "{value}");
        assert_eq!(nir.detokenize_nir(token).unwrap(), value, "{token}");
    }
}

#[test]
fn ff1_tokens_are_unchanged() {
    let s = sealer("phone");
    // The last digit string is longer than the integer fast path (36 digits).
    for (alphabet, value, token) in [
        (Alphabet::Digits, "0612345678", "1396250299"),
        (
            Alphabet::Digits,
            "33612345678901234567",
            "65743062686066271399",
        ),
        (
            Alphabet::Digits,
            "1234567890123456789012345678901234567890",
            "6752526081810696817817205369339057530505",
        ),
        (Alphabet::UpperAlphanumeric, "AB12CD34", "PP0QZLTA"),
        (Alphabet::UpperAlphanumeric, "ZZZZ", "YK07"),
        (Alphabet::Alphanumeric, "aZ09xY", "r4Yhdo"),
        (
            Alphabet::Alphanumeric,
            "Patient42Dossier",
            "UdV5MEOoguSKk0l3",
        ),
    ] {
        assert_eq!(s.tokenize(alphabet, value).unwrap(), token, "{value}");
        assert_eq!(s.detokenize(alphabet, token).unwrap(), value, "{token}");
    }
}

#[test]
fn deterministic_envelopes_and_pseudonyms_are_unchanged() {
    let s = sealer("last_name");
    for (value, armored) in [
        (
            "",
            "pgs1:AgAAAAGuRzIaZDnRwTzdczf5W1xJi_uMhEl22xcoF28jyrfyNA",
        ),
        (
            "Dupont",
            "pgs1:AgAAAAGuRzIacnXipW-fuav5dg-ONgD5DKdeOM7d_6JSUi3QEPOat3gIpg",
        ),
        (
            "Élodie Lefèvre-Saint-Amand, 12 rue des Écoles, 75005 Paris",
            "pgs1:AgAAAAGuRzIaJlzIdIuSYmqoVQeF5VwFSXbS_qqftgoN_UxXIkxQXAccfWa7rw35Sz1VrScvWDiQHVEyjLUZ\
             WuWUubK8z_zXoeo8N0p-riRNNNGshciJPdB4NCZP3UOdZt4",
        ),
    ] {
        let sealed = s.seal_deterministic(value.as_bytes()).unwrap();
        assert_eq!(sealed.to_armored(), armored, "{value:?}");
        assert_eq!(&*s.open_armored(armored).unwrap(), value.as_bytes());
    }
    assert_eq!(s.pseudonym(b"Dupont"), "mDl3RV7Cy7irW9Hy_5Fi2A");
}

#[test]
fn a_stored_randomized_envelope_still_opens() {
    let stored = "pgs1:AQAAAAGuR2deuY45E6TNru9hTfwEwiZRGvVIxbC52PuxwWK4oU0siN1fQ-F0wSPrPW2oTRvIvQ";
    assert_eq!(
        &*sealer("address").open_armored(stored).unwrap(),
        "12 rue des Écoles".as_bytes()
    );
    // The same envelope is bound to its column: another domain refuses it.
    assert!(matches!(
        sealer("notes").open_armored(stored),
        Err(Error::WrongDomain(_))
    ));
    // An empty value, and a binary envelope as a bytea column stores it.
    let empty = "pgs1:AQAAAAGuR2deuXWj4ACFscXOwcxfA39cMIgRk189Qy-SwRY2Lw";
    assert!(sealer("address").open_armored(empty).unwrap().is_empty());
    let binary = "706773010100000001ae47675e41952b4d7966eb694e39ea09d40e1608ca011461312ba1\
                  dac325957163b5df0615a08aea71d3804ac10e1a23ab92";
    let binary: Vec<u8> = (0..binary.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&binary[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        &*sealer("address").open(&binary).unwrap(),
        "3 place du Marché".as_bytes()
    );
}

/// After a rotation a lookup matches a column holding values sealed under either version: the
/// forms it is given must stay the stored ones.
#[test]
fn lookup_forms_after_a_rotation_are_unchanged() {
    let ring = keyring(&[(1, "decrypt-only", 0x5e), (2, "active", 0x6f)]);
    let sealer = ring.sealer(&Domain::column("public", "patients", "last_name").unwrap());
    let forms: Vec<String> = sealer
        .sealed_forms_all_versions(b"Dupont")
        .unwrap()
        .iter()
        .map(|form| form.to_armored())
        .collect();
    assert_eq!(
        forms,
        [
            "pgs1:AgAAAAL4hZT-Nkl7MAePLsNB2NXLK4OUuzxJb8gZQLkgzHFAUz4zujC7aw",
            "pgs1:AgAAAAGuRzIacnXipW-fuav5dg-ONgD5DKdeOM7d_6JSUi3QEPOat3gIpg",
        ]
    );
}
