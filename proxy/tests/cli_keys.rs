//! `pgseal keys …` through the real binary: generate, rotate, list, retire, and the refusals.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory under Cargo's per-target temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli_keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn pgseal(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_pgseal"))
        .args(args)
        .env_remove("PGSEAL_KEYRING")
        .env_remove("PGSEAL_ROOT_KEY")
        .output()
        .expect("run pgseal");
    Run {
        ok: status.success(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The base64 key material in a keyring file.
fn keys_in(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("key = \""))
        .map(|k| k.trim_end_matches('"').to_string())
        .collect()
}

fn assert_no_key_material(run: &Run, keys: &[String]) {
    for key in keys {
        // Any 16-character run of the key would be a leak.
        for start in (0..key.len() - 16).step_by(4) {
            let piece = &key[start..start + 16];
            assert!(!run.stdout.contains(piece), "stdout leaks key material");
            assert!(!run.stderr.contains(piece), "stderr leaks key material");
        }
    }
}

fn generate(dir: &Path) -> PathBuf {
    let path = dir.join("keyring.toml");
    let run = pgseal(&["keys", "generate", "--out", path_str(&path)]);
    assert!(run.ok, "{}", run.stderr);
    path
}

#[test]
fn generate_creates_a_private_keyring_and_refuses_to_overwrite() {
    let dir = TempDir::new("generate");
    let path = dir.path().join("keyring.toml");
    let run = pgseal(&["keys", "generate", "--out", path_str(&path)]);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("version 1 is active"), "{}", run.stdout);
    assert_eq!(mode(&path), 0o600);
    let keys = keys_in(&path);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].len(), 44, "base64 of 32 bytes");
    assert_no_key_material(&run, &keys);

    let before = fs::read(&path).unwrap();
    let again = pgseal(&["keys", "generate", "--out", path_str(&path)]);
    assert!(!again.ok);
    assert!(
        again
            .stderr
            .contains("already exists; refusing to overwrite"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("pgseal keys rotate --keyring"),
        "{}",
        again.stderr
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn rotate_list_and_retire() {
    let dir = TempDir::new("rotate");
    let path = generate(dir.path());
    let first_key = keys_in(&path);

    let run = pgseal(&["keys", "rotate", "--keyring", path_str(&path)]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("version 2 is now active; version 1 is decrypt-only"),
        "{}",
        run.stdout
    );
    assert_eq!(mode(&path), 0o600);
    let keys = keys_in(&path);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], first_key[0], "rotation keeps the old key");
    assert_no_key_material(&run, &keys);

    let run = pgseal(&["keys", "list", "--keyring", path_str(&path)]);
    assert!(run.ok, "{}", run.stderr);
    assert_no_key_material(&run, &keys);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("VERSION"));
    let row = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (v1, v2) = (row(lines[1]), row(lines[2]));
    assert_eq!(
        (&v1[0][..], &v1[1][..], &v1[3][..]),
        ("1", "decrypt-only", "-")
    );
    assert_eq!((&v2[0][..], &v2[1][..]), ("2", "active"));
    for created in [&v1[2], &v2[2]] {
        assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    }

    let run = pgseal(&[
        "keys",
        "retire",
        "--keyring",
        path_str(&path),
        "--version",
        "2",
    ]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("active version; rotate first"),
        "{}",
        run.stderr
    );

    let run = pgseal(&[
        "keys",
        "retire",
        "--keyring",
        path_str(&path),
        "--version",
        "1",
    ]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("version 1 is retired"),
        "{}",
        run.stdout
    );
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        keys_in(&path),
        [keys[1].clone()],
        "the retired key is erased"
    );

    let run = pgseal(&["keys", "list", "--keyring", path_str(&path)]);
    assert!(run.ok, "{}", run.stderr);
    let retired = row(run.stdout.lines().nth(1).unwrap());
    assert_eq!(retired[1], "retired");
    assert!(retired[3].ends_with('Z'), "{}", run.stdout);

    let run = pgseal(&[
        "keys",
        "retire",
        "--keyring",
        path_str(&path),
        "--version",
        "1",
    ]);
    assert!(!run.ok);
    assert!(run.stderr.contains("already retired"), "{}", run.stderr);

    // Rotating after a retirement never reuses a version number.
    let run = pgseal(&["keys", "rotate", "--keyring", path_str(&path)]);
    assert!(
        run.stdout.contains("version 3 is now active"),
        "{}",
        run.stdout
    );
}

#[test]
fn world_readable_keyrings_are_refused_with_the_fix() {
    let dir = TempDir::new("world");
    let path = generate(dir.path());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::read(&path).unwrap();
    for args in [
        vec!["keys", "list", "--keyring", path_str(&path)],
        vec!["keys", "rotate", "--keyring", path_str(&path)],
        vec![
            "keys",
            "retire",
            "--keyring",
            path_str(&path),
            "--version",
            "1",
        ],
    ] {
        let run = pgseal(&args);
        assert!(!run.ok, "{args:?} accepted a world-readable keyring");
        assert!(
            run.stderr
                .contains(&format!("chmod 600 {}", path.display())),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("mode 0644"), "{}", run.stderr);
    }
    assert_eq!(fs::read(&path).unwrap(), before, "nothing was rewritten");
}

#[test]
fn malformed_keyrings_are_refused() {
    let dir = TempDir::new("malformed");
    let path = dir.path().join("bad.toml");
    fs::write(&path, "format = 1\n[[version]\nnumber = 1\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let run = pgseal(&["keys", "list", "--keyring", path_str(&path)]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains(&format!("keyring {}: malformed: line 2", path.display())),
        "{}",
        run.stderr
    );
}

#[test]
fn keyrings_without_an_active_version_are_refused() {
    let dir = TempDir::new("inactive");
    let path = generate(dir.path());
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("state = \"active\"", "state = \"decrypt-only\"");
    fs::write(&path, text).unwrap();
    let run = pgseal(&["keys", "list", "--keyring", path_str(&path)]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("no active key version"),
        "{}",
        run.stderr
    );
    let run = pgseal(&["keys", "rotate", "--keyring", path_str(&path)]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("no active key version"),
        "{}",
        run.stderr
    );
}
