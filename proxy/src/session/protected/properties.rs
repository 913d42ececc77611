//! Property tests of the client → server filter: whatever frames a client sends (valid
//! statements, refused ones, truncated or garbage bodies of every message type the filter
//! decodes), it never panics, fails only with a malformed-message error, and what it forwards
//! is a sequence of well-framed messages — so the server never receives a torn frame from it.
//! The pipeline's answers are checked against PostgreSQL itself in `tests/tests/pipelines.rs`.

use std::sync::Arc;

use bytes::BytesMut;
use proptest::prelude::*;

use super::{Frontend, SessionInfo};
use crate::error::SessionError;
use crate::protect::Protection;
use crate::session::relay::{Filter, Flow};

fn protection() -> Arc<Protection> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/hospital.toml");
    let policy = pgseal_policies::CompiledPolicy::load(&path).expect("the hospital policy");
    let keyring =
        pgseal_keys::Keyring::from_root_key_str("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .expect("a test keyring");
    Arc::new(
        Protection::new(policy, &keyring, crate::protect::Unanalysable::Refuse)
            .expect("protection"),
    )
}

fn frontend(protection: &Arc<Protection>, role: &str) -> Frontend {
    let session = SessionInfo {
        role: role.into(),
        database: "ehr".into(),
        client: "127.0.0.1:1".parse().expect("an address"),
        application_name: None,
    };
    let keyring =
        pgseal_keys::Keyring::from_root_key_str("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .expect("a test keyring");
    let set = crate::protect::set::ProtectionSet::new(
        vec![Arc::clone(protection)],
        crate::protect::set::UnprotectedDatabases::Refuse,
        crate::admin::KeyringStatus::new("test".into(), &keyring),
    )
    .expect("one policy");
    let in_force = Arc::new(crate::protect::set::InForce::new(
        set,
        std::time::Duration::from_secs(30),
    ));
    let state = super::shared_state(protection, 1, &session.database, Default::default());
    Frontend::new(Arc::clone(protection), in_force, state, Arc::new(session))
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut out = s.as_bytes().to_vec();
    out.push(0);
    out
}

const STATEMENTS: &[&str] = &[
    "SELECT id, last_name FROM patients",
    "SELECT id FROM patients ORDER BY last_name",
    "INSERT INTO patients (nir, last_name, birth_date) VALUES ($1, $2, $3)",
    "SELECT id FROM patients WHERE last_name = $1",
    "UPDATE patients SET city = $1 WHERE id = $2",
    "SELECT query_to_xml('select 1', true, false, '')",
    "COPY patients (nir, last_name) FROM STDIN",
    "SELECT 1/0",
    "BEGIN",
    "not sql at all",
];

/// One client message: well-formed with a known statement, or any bytes under a decoded tag.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let statement = || proptest::sample::select(STATEMENTS);
    let name = || proptest::sample::select(&["", "s1", "s2"][..]);
    let value = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20));
    prop_oneof![
        statement().prop_map(|sql| frame(b'Q', &cstr(sql))),
        (name(), statement()).prop_map(|(name, sql)| {
            let mut body = cstr(name);
            body.extend(cstr(sql));
            body.extend(0i16.to_be_bytes());
            frame(b'P', &body)
        }),
        (
            name(),
            proptest::collection::vec(value, 0..4),
            any::<bool>()
        )
            .prop_map(|(name, values, binary)| {
                let mut body = cstr("");
                body.extend(cstr(name));
                body.extend(1i16.to_be_bytes());
                body.extend(i16::from(binary).to_be_bytes());
                body.extend((values.len() as i16).to_be_bytes());
                for v in values {
                    match v {
                        None => body.extend((-1i32).to_be_bytes()),
                        Some(v) => {
                            body.extend((v.len() as i32).to_be_bytes());
                            body.extend(v);
                        }
                    }
                }
                body.extend(0i16.to_be_bytes());
                frame(b'B', &body)
            }),
        Just(frame(b'E', &[0, 0, 0, 0, 0])),
        Just(frame(b'D', b"S\0")),
        Just(frame(b'S', &[])),
        Just(frame(b'H', &[])),
        (
            proptest::sample::select(&b"QPBDECSFdcf"[..]),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(tag, body)| frame(tag, &body)),
    ]
}

/// Whether `bytes` is a sequence of whole frames with valid lengths.
fn well_framed(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if bytes.len() < 5 {
            return false;
        }
        let length = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let Ok(length) = usize::try_from(length) else {
            return false;
        };
        if length < 4 || bytes.len() < 1 + length {
            return false;
        }
        bytes = &bytes[1 + length..];
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_client_messages_are_forwarded_well_framed_or_refused(
        messages in proptest::collection::vec(message(), 1..12),
        role in proptest::sample::select(&["ehr_app", "ehr_billing", "ehr_admin", "nobody"][..]),
    ) {
        let protection = protection();
        let mut filter = frontend(&protection, role);
        for message in &messages {
            let mut out = BytesMut::new();
            if !filter.inspects(message[0]) {
                continue;
            }
            match filter.on_frame(message, &mut out) {
                Ok(Flow::Done | Flow::Hold(_)) => {
                    prop_assert!(well_framed(&out), "torn output for {message:?}: {out:?}");
                }
                Ok(Flow::Unchanged) => {
                    // The message follows what the filter wrote ahead of it.
                    out.extend_from_slice(message);
                    prop_assert!(well_framed(&out), "torn output for {message:?}: {out:?}");
                }
                Err(SessionError::ClientMessage(_)) => break,
                Err(other) => prop_assert!(false, "unexpected error {other:?} for {message:?}"),
            }
        }
    }
}
