//! Wrapped keyrings against a real SoftHSM token.
//!
//! SoftHSM finds its tokens through `SOFTHSM2_CONF`, read when the module is initialized, so
//! each test writes its own configuration and token directory in a temporary directory and runs
//! its body in a child process (this test binary again, the `#[ignore]`d `child_*` test of the
//! same name) with `SOFTHSM2_CONF` and `PGSEAL_HSM_PIN` set. The tests fail, never skip, when
//! `softhsm2-util` or the module is missing: install `softhsm2`.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgseal_keys::hsm::{HsmAccess, HsmBinding, HsmError, Kek};
use pgseal_keys::{Domain, Error, KeyState, Keyring, KeyringFile, KeyringProblem};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "pgseal-test";
const PIN: &str = "4321";
const SO_PIN: &str = "87654321";
const KEY: &str = "pgseal-kek";

/// A SoftHSM configuration with one initialized token, in a temporary directory.
struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

fn softhsm() -> SoftHsm {
    assert!(
        Path::new(MODULE).is_file(),
        "{MODULE} is missing: install SoftHSM (apt-get install softhsm2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let output = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN])
        .args(["--so-pin", SO_PIN, "--pin", PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util is missing: install SoftHSM (apt-get install softhsm2)");
    assert!(
        output.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    SoftHsm { dir, conf }
}

/// Runs the `#[ignore]`d child test `name` in a new process against `hsm`.
fn run_child(name: &str, hsm: &SoftHsm) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("PGSEAL_HSM_PIN", PIN)
        .env("PGSEAL_TEST_DIR", hsm.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child {name} failed:\n{stdout}\n{stderr}"
    );
}

fn binding(key: &str) -> HsmBinding {
    HsmBinding {
        module: MODULE.into(),
        token: TOKEN.into(),
        key: key.into(),
    }
}

fn test_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("PGSEAL_TEST_DIR").expect("run through run_child"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hsm_problem(err: Error) -> HsmError {
    match err {
        Error::KeyringFile {
            problem: KeyringProblem::Hsm(e),
            ..
        }
        | Error::Keyring {
            problem: KeyringProblem::Hsm(e),
            ..
        }
        | Error::Hsm(e) => *e,
        other => panic!("not an HSM error: {other}"),
    }
}

#[test]
fn wrap_round_trip_and_same_seals() {
    run_child("child_wrap_round_trip_and_same_seals", &softhsm());
}

#[test]
#[ignore = "run by wrap_round_trip_and_same_seals with SOFTHSM2_CONF set"]
fn child_wrap_round_trip_and_same_seals() {
    let dir = test_dir();
    let mut plain = KeyringFile::generate().unwrap();
    plain.rotate().unwrap();
    let plain_text = plain.to_toml();
    let keys: Vec<String> = plain_text
        .lines()
        .filter_map(|l| l.strip_prefix("key = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .collect();
    assert_eq!(keys.len(), 2);

    let mut wrapped = KeyringFile::from_toml_str(&plain_text).unwrap();
    wrapped
        .wrap(binding(KEY), &HsmAccess::default(), true)
        .unwrap();
    let path = dir.join("wrapped.toml");
    wrapped.write_new(&path).unwrap();
    drop(wrapped);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("format = 2") && text.contains("[hsm]"),
        "{text}"
    );
    for key in &keys {
        let bytes = base64_decode(key);
        assert!(!text.contains(key.as_str()), "base64 root key in the file");
        assert!(!text.contains(&key[..12]), "part of a root key in the file");
        assert!(!text.to_lowercase().contains(&hex(&bytes)), "hex root key");
        assert!(!text.contains(&hex(&bytes).to_uppercase()), "hex root key");
    }

    // Loaded through the HSM, the keyring seals exactly as the plain one.
    let from_plain = Keyring::from_toml_str(&plain_text).unwrap();
    let from_hsm = Keyring::load(&path).unwrap();
    assert_eq!(from_hsm.active_version(), 2);
    let domain = Domain::column("public", "patients", "nir").unwrap();
    let (a, b) = (from_plain.sealer(&domain), from_hsm.sealer(&domain));
    assert_eq!(
        a.seal_deterministic(b"255081416802538")
            .unwrap()
            .to_armored(),
        b.seal_deterministic(b"255081416802538")
            .unwrap()
            .to_armored()
    );
    assert_eq!(
        a.tokenize_nir("255081416802538").unwrap(),
        b.tokenize_nir("255081416802538").unwrap()
    );
    assert_eq!(a.pseudonym(b"42"), b.pseudonym(b"42"));
    let sealed = a.seal_randomized(b"x").unwrap().to_armored();
    assert_eq!(&*b.open_armored(&sealed).unwrap(), b"x");

    // Rotation wraps the new version through the HSM; retirement drops its wrapped key.
    let mut file = KeyringFile::load(&path).unwrap();
    assert_eq!(file.hsm_binding().unwrap().key, KEY);
    assert_eq!(file.rotate().unwrap(), 3);
    file.retire(1).unwrap();
    file.write_replace(&path).unwrap();
    drop(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("wrapped = ").count(), 2, "{text}");
    let again = KeyringFile::load(&path).unwrap();
    let states: Vec<_> = again.versions().map(|v| (v.number(), v.state())).collect();
    assert_eq!(
        states,
        [
            (1, KeyState::Retired),
            (2, KeyState::DecryptOnly),
            (3, KeyState::Active)
        ]
    );
    let ring = again.into_keyring();
    assert_eq!(&*ring.sealer(&domain).open_armored(&sealed).unwrap(), b"x");

    // Unwrapping gives back the plain keys (version 2 as it was).
    let mut back = KeyringFile::load(&path).unwrap();
    assert!(back.unwrap_to_plain().is_some());
    let back_text = back.to_toml();
    assert!(back_text.contains("format = 1") && !back_text.contains("[hsm]"));
    assert!(back_text.contains(keys[1].as_str()));
    assert!(
        !back_text.contains(keys[0].as_str()),
        "retired key stays erased"
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[test]
fn failures_are_named() {
    run_child("child_failures_are_named", &softhsm());
}

#[test]
#[ignore = "run by failures_are_named with SOFTHSM2_CONF set"]
fn child_failures_are_named() {
    let dir = test_dir();
    let mut file = KeyringFile::generate().unwrap();
    let default = HsmAccess::default();

    // Missing key without --create-key.
    let err = file.wrap(binding("absent"), &default, false).unwrap_err();
    assert!(matches!(hsm_problem(err), HsmError::KeyNotFound { ref key, .. } if key == "absent"));
    // Token absent.
    let mut other = binding(KEY);
    other.token = "no-such-token".into();
    let err = hsm_problem(file.wrap(other, &default, true).unwrap_err());
    assert!(
        matches!(&err, HsmError::TokenNotFound { present, .. } if present.contains(TOKEN)),
        "{err}"
    );
    // Module absent.
    let mut other = binding(KEY);
    other.module = "/nonexistent/libsofthsm2.so".into();
    let err = hsm_problem(file.wrap(other, &default, true).unwrap_err());
    assert!(matches!(err, HsmError::Module { .. }), "{err}");
    // Wrong PIN (from a PIN file, which takes precedence over the environment).
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, "0000\n").unwrap();
    set_private(&pin_file);
    let wrong = HsmAccess {
        module: None,
        pin_file: Some(pin_file.clone()),
    };
    let err = hsm_problem(file.wrap(binding(KEY), &wrong, true).unwrap_err());
    assert!(
        matches!(&err, HsmError::Login { reason, .. } if reason.contains("CKR_PIN_INCORRECT")),
        "{err}"
    );

    // A real wrap, then: --create-key on an existing key refuses.
    file.wrap(binding(KEY), &default, true).unwrap();
    let path = dir.join("wrapped.toml");
    file.write_new(&path).unwrap();
    drop(file);
    let mut fresh = KeyringFile::generate().unwrap();
    let err = hsm_problem(fresh.wrap(binding(KEY), &default, true).unwrap_err());
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");

    // A right PIN from a file works; the wrong one is refused at load.
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    Keyring::load_with(&path, &wrong).unwrap();
    std::fs::write(&pin_file, "0000\n").unwrap();
    let err = Keyring::load_with(&path, &wrong).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("wrong PIN") && message.contains(&path.display().to_string()),
        "{message}"
    );

    // A module override that does not exist is refused, naming it.
    let moved = HsmAccess {
        module: Some("/nonexistent/pkcs11.so".into()),
        pin_file: None,
    };
    let message = Keyring::load_with(&path, &moved).unwrap_err().to_string();
    assert!(message.contains("/nonexistent/pkcs11.so"), "{message}");

    // Tampered: one character of a wrapped value, a value moved to another version, another
    // keyring id.
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.starts_with("wrapped = ")).unwrap();
    let value = line
        .trim_start_matches("wrapped = \"")
        .trim_end_matches('"');
    let mut chars: Vec<char> = value.chars().collect();
    chars[20] = if chars[20] == 'A' { 'B' } else { 'A' };
    let altered: String = chars.into_iter().collect();
    let id_at = text.find("keyring_id = \"").unwrap() + "keyring_id = \"".len();
    let mut other_id = text.clone();
    let flipped = if &text[id_at..id_at + 2] == "00" {
        "11"
    } else {
        "00"
    };
    other_id.replace_range(id_at..id_at + 2, flipped);
    for (what, bad) in [
        ("altered", text.replace(value, &altered)),
        ("moved", text.replace("number = 1", "number = 7")),
        ("other keyring", other_id),
    ] {
        let err = hsm_problem(Keyring::from_toml_str(&bad).unwrap_err());
        assert!(matches!(err, HsmError::Tampered { .. }), "{what}: {err}");
        assert!(err.to_string().contains("failed authentication"), "{err}");
    }
    let err = Keyring::from_toml_str(&text.replace(value, "bm90IGEga2V5")).unwrap_err();
    assert!(matches!(hsm_problem(err), HsmError::Tampered { .. }));
}

#[test]
fn unfit_keks_are_refused() {
    run_child("child_unfit_keks_are_refused", &softhsm());
}

#[test]
#[ignore = "run by unfit_keks_are_refused with SOFTHSM2_CONF set"]
fn child_unfit_keks_are_refused() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::{Mechanism, MechanismType};
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    // Keys made with the HSM's own interface: extractable, 128-bit, encrypt-only.
    {
        let pkcs11 = Pkcs11::new(MODULE).unwrap();
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = pkcs11.get_slots_with_token().unwrap()[0];
        let session = pkcs11.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::from(PIN)))
            .unwrap();
        // Each key: a token object, sensitive, under its label, with `attributes`.
        let key =
            |mechanism: Mechanism, key_type: KeyType, label: &str, attributes: &[Attribute]| {
                let mut all = vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(key_type),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Token(true),
                    Attribute::Sensitive(true),
                ];
                all.extend_from_slice(attributes);
                session.generate_key(&mechanism, &all).unwrap();
            };
        let usable = |extractable: bool, decrypt: bool| {
            [
                Attribute::Extractable(extractable),
                Attribute::Encrypt(true),
                Attribute::Decrypt(decrypt),
            ]
        };
        // Of the wrong type under a KEK's label: a generic secret and a DES3 key.
        let mut generic = usable(false, true).to_vec();
        generic.push(Attribute::ValueLen(32u64.into()));
        key(
            Mechanism::GenericSecretKeyGen,
            KeyType::GENERIC_SECRET,
            "generic",
            &generic,
        );
        key(
            Mechanism::Des3KeyGen,
            KeyType::DES3,
            "des3",
            &usable(false, true),
        );
        // Fit in every attribute pgseal checks, but only allowed AES-CBC: the token itself
        // refuses AES-GCM with it.
        let mut cbc_only = usable(false, true).to_vec();
        cbc_only.push(Attribute::ValueLen(32u64.into()));
        cbc_only.push(Attribute::AllowedMechanisms(vec![MechanismType::AES_CBC]));
        key(Mechanism::AesKeyGen, KeyType::AES, "cbc-only", &cbc_only);
        for (label, len, extractable, decrypt) in [
            ("extractable", 32u64, true, true),
            ("short", 16, false, true),
            ("encrypt-only", 32, false, false),
        ] {
            let mut attributes = usable(extractable, decrypt).to_vec();
            attributes.push(Attribute::ValueLen(len.into()));
            key(Mechanism::AesKeyGen, KeyType::AES, label, &attributes);
        }
        session.logout().unwrap();
        drop(session);
        pkcs11.finalize().unwrap();
    }
    for (label, needle) in [
        ("extractable", "CKA_EXTRACTABLE"),
        ("short", "128 bits"),
        ("encrypt-only", "CKA_DECRYPT"),
        ("generic", "not an AES key"),
        ("des3", "not an AES key"),
    ] {
        let err = Kek::open(&binding(label), &HsmAccess::default()).unwrap_err();
        assert!(
            matches!(&err, HsmError::KeyUnfit { reason, .. } if reason.contains(needle)),
            "{label}: {err}"
        );
        assert!(err.to_string().contains(label), "{err}");
    }
    // The token refuses the mechanism: wrapping fails naming the mechanism and the cause,
    // and nothing is wrapped.
    let mut file = KeyringFile::generate().unwrap();
    let err = hsm_problem(
        file.wrap(binding("cbc-only"), &HsmAccess::default(), false)
            .unwrap_err(),
    );
    let message = err.to_string();
    assert!(
        matches!(&err, HsmError::Mechanism { mechanism: "CKM_AES_GCM", reason, .. }
            if reason.contains("CKR_MECHANISM_INVALID")),
        "{message}"
    );
    assert!(
        message.contains("refuses CKM_AES_GCM") && message.contains("CKA_ALLOWED_MECHANISMS"),
        "{message}"
    );
    assert!(file.hsm_binding().is_none());
    assert!(file.to_toml().contains("format = 1"));
}

#[test]
fn rewrap_moves_the_keyring_to_another_kek() {
    run_child("child_rewrap_moves_the_keyring_to_another_kek", &softhsm());
}

#[test]
#[ignore = "run by rewrap_moves_the_keyring_to_another_kek with SOFTHSM2_CONF set"]
fn child_rewrap_moves_the_keyring_to_another_kek() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let dir = test_dir();
    let default = HsmAccess::default();
    let mut file = KeyringFile::generate().unwrap();
    file.rotate().unwrap();
    file.wrap(binding("kek-old"), &default, true).unwrap();
    let path = dir.join("wrapped.toml");
    file.write_new(&path).unwrap();
    let id = file.hsm_origin().unwrap().keyring_id;
    drop(file);

    let domain = Domain::column("public", "patients", "nir").unwrap();
    let before = Keyring::load(&path).unwrap();
    let sealer = before.sealer(&domain);
    let deterministic = sealer
        .seal_deterministic(b"255081416802538")
        .unwrap()
        .to_armored();
    let randomized = sealer.seal_randomized(b"Dupont").unwrap().to_armored();
    drop((sealer, before));

    // A rewrap to a key that is not there fails, names it, and changes nothing.
    let original = std::fs::read(&path).unwrap();
    let mut file = KeyringFile::load(&path).unwrap();
    let err = hsm_problem(file.rewrap(binding("absent"), &default, false).unwrap_err());
    assert!(
        matches!(&err, HsmError::KeyNotFound { key, .. } if key == "absent"),
        "{err}"
    );
    assert_eq!(file.hsm_binding().unwrap().key, "kek-old");
    // Nor to the key it already has.
    let err = file
        .rewrap(binding("kek-old"), &default, false)
        .unwrap_err();
    assert!(err.to_string().contains("already wrapped"), "{err}");

    // Rewrap under a new KEK generated on the same token, with both open at once.
    let previous = file.rewrap(binding("kek-new"), &default, true).unwrap();
    assert_eq!(previous.key, "kek-old");
    // The document still reaches the token after the old KEK's session closed.
    assert_eq!(file.rotate().unwrap(), 3);
    file.write_replace(&path).unwrap();
    drop(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_ne!(text.as_bytes(), original.as_slice());
    assert!(text.contains("key = \"kek-new\""), "{text}");
    assert_eq!(text.matches("wrapped = ").count(), 3, "{text}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The old KEK is destroyed on the token.
    {
        let pkcs11 = Pkcs11::new(MODULE).unwrap();
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = pkcs11.get_slots_with_token().unwrap()[0];
        let session = pkcs11.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::from(PIN)))
            .unwrap();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(b"kek-old".to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1);
        session.destroy_object(found[0]).unwrap();
        drop(session);
        pkcs11.finalize().unwrap();
    }
    assert!(matches!(
        Kek::open(&binding("kek-old"), &default).unwrap_err(),
        HsmError::KeyNotFound { .. }
    ));

    // The keyring still opens, same id, and reads and seals the same values.
    let after = Keyring::load(&path).unwrap();
    let origin = after.hsm_origin().unwrap();
    assert_eq!(origin.keyring_id, id);
    assert_eq!(origin.binding.key, "kek-new");
    assert_eq!(after.active_version(), 3);
    let sealer = after.sealer(&domain);
    assert_eq!(&*sealer.open_armored(&randomized).unwrap(), b"Dupont");
    assert_eq!(
        &*sealer.open_armored(&deterministic).unwrap(),
        b"255081416802538"
    );

    // A plain keyring cannot be rewrapped.
    let mut plain = KeyringFile::generate().unwrap();
    let err = plain
        .rewrap(binding("kek-new"), &default, false)
        .unwrap_err();
    assert!(err.to_string().contains("not wrapped"), "{err}");
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
