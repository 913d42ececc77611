//! Known answers for what pgseal writes into a database: tokens, deterministic envelopes and
//! pseudonyms of fixed values under a fixed root key, and a randomized envelope that must keep
//! opening. Deployed databases hold these forms, so any change to the code behind them (a faster
//! FF1 adapter, another AES-GCM-SIV backend) must leave every one of them unchanged, or stored
//! values would stop opening and lookups would stop matching. The expected values were produced
//! by the implementation of 2026-11 (fpe's FF1 over `aes::Aes256`, RustCrypto's AES-256-GCM-SIV).

use pgseal_keys::{Alphabet, Domain, Keyring, RootKey, Sealer};

fn sealer(column: &str) -> Sealer {
    let key = RootKey::from_bytes([0x5e; 32]).to_base64();
    let text = format!(
        "format = 1\n[[version]]\nnumber = 1\nstate = \"active\"\n\
         created = \"2025-01-01T00:00:00Z\"\nkey = \"{}\"\n",
        &*key
    );
    let ring = Keyring::from_toml_str(&text).unwrap();
    ring.sealer(&Domain::column("public", "patients", column).unwrap())
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
    assert!(sealer("notes").open_armored(stored).is_err());
}
