//! The audit trail: a written file verifies; removing, reordering or editing a line — or cutting
//! its beginning — is caught and the first bad line named; restarts continue the chain.

use std::path::Path;

use pgseal::audit::{
    AuditBudget, AuditColumn, AuditEvent, AuditLog, AuditTarget, Fingerprint, VerifyError,
    verify_file,
};
use pgseal_keys::{Keyring, KeyringFile};

fn event(n: u64) -> AuditEvent {
    let fp = Fingerprint::of(&format!("SELECT nom FROM patients WHERE id = {n}"));
    AuditEvent {
        time: AuditEvent::now(),
        role: "ehr_admin".into(),
        end_user: Some("dr.martin".into()),
        client: Some("10.0.0.7:51234".into()),
        application_name: Some("psql".into()),
        database: Some("ehr".into()),
        fingerprint: fp.text,
        fingerprint_id: fp.id,
        tables: vec!["public.patients".into()],
        columns: vec![AuditColumn {
            column: "public.patients.nom".into(),
            view: "ciphertext".into(),
        }],
        rows: n,
        rows_scanned: None,
        budget: AuditBudget {
            decision: "allow",
            ..AuditBudget::default()
        },
        sqlstate: None,
    }
}

async fn write(path: &Path, keyring: &Keyring, events: u64) {
    let log = AuditLog::open(
        AuditTarget::File(path.to_owned()),
        keyring.audit_key(),
        64,
        None,
    )
    .unwrap();
    for n in 0..events {
        log.record(event(n));
    }
    log.close().await.unwrap();
    assert_eq!(
        log.stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn broken_line(path: &Path, keyring: &Keyring) -> (u64, String) {
    match verify_file(path, keyring) {
        Err(VerifyError::Broken { line, problem }) => (line, problem),
        other => panic!("expected a broken trail, got {other:?}"),
    }
}

#[tokio::test]
async fn a_written_trail_verifies_and_records_what_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let keyring = KeyringFile::generate().unwrap().into_keyring();
    write(&path, &keyring, 5).await;

    let report = verify_file(&path, &keyring).unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.statements, 5);
    assert_eq!(report.starts, 1);
    assert_eq!(report.last_seq, 6);
    assert_eq!(report.head.len(), 64);

    let all = lines(&path);
    let start: serde_json::Value = serde_json::from_str(&all[0]).unwrap();
    assert_eq!(start["type"], "start");
    assert_eq!(start["seq"], 1);
    assert_eq!(start["chain"], "new");
    assert_eq!(start["key_version"], 1);
    let first: serde_json::Value = serde_json::from_str(&all[1]).unwrap();
    assert_eq!(first["type"], "statement");
    assert_eq!(first["seq"], 2);
    assert_eq!(first["role"], "ehr_admin");
    assert_eq!(first["end_user"], "dr.martin");
    assert_eq!(first["client"], "10.0.0.7:51234");
    assert_eq!(first["application_name"], "psql");
    assert_eq!(
        first["fingerprint"],
        "select nom from patients where id = ?"
    );
    assert_eq!(first["tables"][0], "public.patients");
    assert_eq!(first["columns"][0]["view"], "ciphertext");
    assert_eq!(first["budget"]["decision"], "allow");
    assert_eq!(first["mac"].as_str().unwrap().len(), 64);
    // The file is private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn tampering_is_caught_at_the_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let keyring = KeyringFile::generate().unwrap().into_keyring();
    write(&path, &keyring, 5).await;
    let original = lines(&path);

    // A line deleted.
    let mut removed = original.clone();
    removed.remove(3);
    rewrite(&path, &removed);
    let (line, problem) = broken_line(&path, &keyring);
    assert_eq!(line, 4);
    assert!(
        problem.contains("sequence number 5 where 4 was expected"),
        "{problem}"
    );

    // Two lines swapped.
    let mut swapped = original.clone();
    swapped.swap(2, 3);
    rewrite(&path, &swapped);
    assert_eq!(broken_line(&path, &keyring).0, 3);

    // One character edited: 3 rows become 9.
    let mut edited = original.clone();
    edited[4] = edited[4].replace("\"rows\":3", "\"rows\":9");
    assert_ne!(edited[4], original[4]);
    rewrite(&path, &edited);
    let (line, problem) = broken_line(&path, &keyring);
    assert_eq!(line, 5);
    assert!(problem.contains("MAC does not match"), "{problem}");

    // A line's MAC recomputed without the key is not possible; a MAC swapped in from another
    // line fails too.
    let mut forged = original.clone();
    let mac_of = |l: &str| l[l.len() - 66..].to_owned();
    let other_mac = mac_of(&original[2]);
    let n = forged[5].len();
    forged[5].replace_range(n - 66.., &other_mac);
    rewrite(&path, &forged);
    assert_eq!(broken_line(&path, &keyring).0, 6);

    // The beginning cut off.
    rewrite(&path, &original[2..]);
    let (line, problem) = broken_line(&path, &keyring);
    assert_eq!(line, 1);
    assert!(
        problem.contains("does not begin with a start record"),
        "{problem}"
    );

    // Junk inside.
    let mut junk = original.clone();
    junk.insert(2, "hello".into());
    rewrite(&path, &junk);
    let (line, problem) = broken_line(&path, &keyring);
    assert_eq!(line, 3);
    assert!(problem.contains("does not end with a MAC"), "{problem}");

    // Another keyring: the very first line fails.
    rewrite(&path, &original);
    let other = KeyringFile::generate().unwrap().into_keyring();
    assert_eq!(broken_line(&path, &other).0, 1);
    // And the untouched file still verifies.
    assert!(verify_file(&path, &keyring).is_ok());

    // An empty file holds no record.
    std::fs::write(&path, "").unwrap();
    assert_eq!(broken_line(&path, &keyring).0, 0);
}

#[tokio::test]
async fn restarts_continue_the_chain_across_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut file = KeyringFile::generate().unwrap();
    write(
        &path,
        &KeyringFile::from_toml_str(&file.to_toml())
            .unwrap()
            .into_keyring(),
        2,
    )
    .await;
    let first_version = file.active_version();
    file.rotate().unwrap();
    let keyring = KeyringFile::from_toml_str(&file.to_toml())
        .unwrap()
        .into_keyring();
    write(&path, &keyring, 3).await;

    let report = verify_file(&path, &keyring).unwrap();
    assert_eq!(report.records, 7);
    assert_eq!(report.starts, 2);
    assert_eq!(report.statements, 5);
    let all = lines(&path);
    let restart: serde_json::Value = serde_json::from_str(&all[3]).unwrap();
    assert_eq!(restart["type"], "start");
    assert_eq!(restart["chain"], "continued");
    assert_eq!(restart["seq"], 4);
    assert_eq!(restart["key_version"], first_version + 1);

    // The second run's start record removed: the chain breaks there.
    let mut cut = all.clone();
    cut.remove(3);
    rewrite(&path, &cut);
    assert_eq!(broken_line(&path, &keyring).0, 4);

    // Once the first version is retired, its part of the trail cannot be checked.
    rewrite(&path, &all);
    file.retire(first_version).unwrap();
    let retired = file.into_keyring();
    match verify_file(&path, &retired) {
        Err(err @ VerifyError::KeyUnavailable { line: 1, .. }) => {
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("it is retired"), "{err}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_torn_last_line_starts_a_new_chain_that_verify_reports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let keyring = KeyringFile::generate().unwrap().into_keyring();
    write(&path, &keyring, 2).await;
    // A crash in the middle of a write.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"seq\":4,\"type\":\"stat");
    std::fs::write(&path, text).unwrap();
    write(&path, &keyring, 1).await;
    let all = lines(&path);
    assert_eq!(all.len(), 6);
    let (line, _) = broken_line(&path, &keyring);
    assert_eq!(line, 4, "the torn line is named");
}

#[tokio::test]
async fn events_after_close_are_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let keyring = KeyringFile::generate().unwrap().into_keyring();
    let log = AuditLog::open(
        AuditTarget::File(path.clone()),
        keyring.audit_key(),
        4,
        None,
    )
    .unwrap();
    log.record(event(1));
    log.flush().await.unwrap();
    assert_eq!(lines(&path).len(), 2);
    log.close().await.unwrap();
    log.record(event(2));
    let stats = log.stats();
    assert_eq!(stats.written.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.last_seq.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert!(log.close().await.is_err());
}
