//! `pgseal audit verify` as a user runs it: exit codes and messages naming the first bad line.

use std::path::Path;
use std::process::Command;

use pgseal::audit::{AuditEvent, AuditLog, AuditTarget, Fingerprint};
use pgseal_keys::KeyringFile;
use pgseal_tests::pgseal_binary;

fn verify(trail: &Path, keyring: &Path) -> (i32, String, String) {
    let output = Command::new(pgseal_binary())
        .args(["audit", "verify"])
        .arg(trail)
        .arg("--keyring")
        .arg(keyring)
        .env_remove("PGSEAL_KEYRING")
        .env_remove("PGSEAL_ROOT_KEY")
        .output()
        .expect("run pgseal");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn audit_verify_names_the_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let keyring_path = dir.path().join("keyring.toml");
    let keyring_file = KeyringFile::generate().unwrap();
    keyring_file.write_new(&keyring_path).unwrap();
    let keyring = keyring_file.into_keyring();
    let trail = dir.path().join("audit.jsonl");
    let log = AuditLog::open(
        AuditTarget::File(trail.clone()),
        keyring.audit_key(),
        16,
        None,
    )
    .unwrap();
    for n in 0..4 {
        let fp = Fingerprint::of(&format!("SELECT * FROM patients WHERE id = {n}"));
        log.record(AuditEvent {
            time: AuditEvent::now(),
            role: "ehr_admin".into(),
            fingerprint: fp.text,
            fingerprint_id: fp.id,
            rows: n,
            rows_scanned: None,
            ..AuditEvent::default()
        });
    }
    log.close().await.unwrap();

    let (code, stdout, stderr) = verify(&trail, &keyring_path);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("intact: 5 records (4 statements, 1 writer starts), last seq 5"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut removed = lines.clone();
    removed.remove(2);
    std::fs::write(&trail, removed.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) = verify(&trail, &keyring_path);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "{}: line 3: sequence number 4 where 3 was expected",
            trail.display()
        )),
        "{stdout}"
    );
    assert!(stderr.contains("altered or damaged"), "{stderr}");

    let edited = text.replacen("\"rows\":2", "\"rows\":0", 1);
    std::fs::write(&trail, edited).unwrap();
    let (code, stdout, _) = verify(&trail, &keyring_path);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("line 4: its MAC does not match"),
        "{stdout}"
    );

    // Cannot check: a missing file, a missing keyring.
    let (code, _, stderr) = verify(&dir.path().join("nope.jsonl"), &keyring_path);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read"), "{stderr}");
    let (code, _, stderr) = verify(&trail, &dir.path().join("no-keyring.toml"));
    assert_eq!(code, 2, "{stderr}");
}
