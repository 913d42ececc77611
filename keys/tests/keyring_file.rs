//! Keyring files on disk: private creation, no overwrite, atomic rewrite, refusals with the fix,
//! and `PGSEAL_ROOT_KEY`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use pgseal_keys::{Domain, Error, KeyState, Keyring, KeyringFile, KeyringProblem, ROOT_KEY_ENV};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generate_writes_a_private_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.toml");
    let file = KeyringFile::generate().unwrap();
    file.write_new(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let before = fs::read(&path).unwrap();

    let err = KeyringFile::generate()
        .unwrap()
        .write_new(&path)
        .unwrap_err();
    assert!(matches!(
        &err,
        Error::KeyringFile {
            problem: KeyringProblem::AlreadyExists,
            ..
        }
    ));
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the existing keyring is untouched"
    );

    let ring = Keyring::load(&path).unwrap();
    assert_eq!(ring.active_version(), 1);
    assert_eq!(ring.versions()[0].state(), KeyState::Active);
}

#[test]
fn rewrite_is_atomic_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.toml");
    KeyringFile::generate().unwrap().write_new(&path).unwrap();
    let old = Keyring::load(&path).unwrap();
    let sealed = old
        .sealer(&Domain::shared("p").unwrap())
        .seal_randomized(b"kept")
        .unwrap();

    let mut file = KeyringFile::load(&path).unwrap();
    file.rotate().unwrap();
    file.write_replace(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keyring.toml"], "no temporary file left behind");

    let ring = Keyring::load(&path).unwrap();
    assert_eq!(ring.active_version(), 2);
    let opened = ring
        .sealer(&Domain::shared("p").unwrap())
        .open(sealed.as_bytes())
        .unwrap();
    assert_eq!(&*opened, b"kept");
}

#[test]
fn group_or_world_accessible_files_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.toml");
    KeyringFile::generate().unwrap().write_new(&path).unwrap();
    for bits in [0o644, 0o640, 0o604, 0o620] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bits)).unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::KeyringFile {
                    problem: KeyringProblem::InsecurePermissions { .. },
                    ..
                }
            ),
            "{bits:o}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        assert!(message.contains(&format!("{bits:04o}")), "{message}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    Keyring::load(&path).unwrap();
}

#[test]
fn bad_files_name_their_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let malformed = write("malformed.toml", "format = 1\n[[version]\n");
    let err = Keyring::load(&malformed).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "keyring {}: malformed: line 2",
            malformed.display()
        )),
        "{err}"
    );

    let text = KeyringFile::generate()
        .unwrap()
        .to_toml()
        .replace("\"active\"", "\"decrypt-only\"");
    let inactive = write("inactive.toml", &text);
    let err = Keyring::load(&inactive).unwrap_err();
    assert!(
        matches!(&err, Error::KeyringFile { problem: KeyringProblem::NoActiveVersion, path } if *path == inactive)
    );
    assert!(err.to_string().contains("no active key version"), "{err}");

    let missing = dir.path().join("missing.toml");
    let err = Keyring::load(&missing).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::KeyringFile {
                problem: KeyringProblem::Io(_),
                ..
            }
        ),
        "{err}"
    );

    let err = Keyring::load(dir.path()).unwrap_err();
    assert!(matches!(&err, Error::KeyringFile { .. }), "{err}");
}

/// Runs in a child process (see the test below), where `PGSEAL_ROOT_KEY` is set.
#[test]
#[ignore = "run by root_key_from_environment in a child process"]
fn child_reads_root_key_from_environment() {
    let ring = Keyring::from_env().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(ring.active_version(), 5);
    let sealer = ring.sealer(&Domain::shared("p").unwrap());
    assert_eq!(
        &*sealer
            .open(&sealer.seal_randomized(b"x").unwrap().into_bytes())
            .unwrap(),
        b"x"
    );
    println!("child-ok");
}

#[test]
fn root_key_from_environment() {
    let key = pgseal_keys::RootKey::generate().unwrap().to_base64();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_root_key_from_environment",
            "--ignored",
            "--nocapture",
        ])
        .env(ROOT_KEY_ENV, format!("5:{}", &*key))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("child-ok"),
        "{stdout}"
    );

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_root_key_from_environment",
            "--ignored",
        ])
        .env(ROOT_KEY_ENV, "not-a-key")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(all.contains("PGSEAL_ROOT_KEY: bad root key"), "{all}");
    assert!(
        !all.contains("not-a-key"),
        "the bad value is not echoed: {all}"
    );
}
