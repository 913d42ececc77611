//! Protected sessions stay in step with the server whatever the client pipelines: failing,
//! refused and valid messages mixed, simple Queries inside an extended-protocol group, clients
//! that leave mid-pipeline. PostgreSQL is the oracle: the same pipeline, with each statement
//! pgseal refuses replaced by one the server itself rejects at the same step, is sent directly
//! to the server, and the two answers must match message for message.

use std::time::Duration;

use pgseal_tests::cluster;
use pgseal_tests::cluster::TRUST_ROLE;
use pgseal_tests::hospital::Hospital;
use pgseal_tests::proxy::TestProxy;
use pgseal_tests::raw::{
    self, Message, RawClient, bind_params, describe, execute, flush, parse_typed, sync,
};

/// The hospital, pgseal in front of it, and `pgseal_trust` granted the tables.
async fn setup() -> (Hospital, TestProxy) {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    hospital.grant_trust_role(cluster);
    let proxy = hospital.proxy(cluster).await;
    (hospital, proxy)
}

/// A raw session as `pgseal_trust`, through pgseal or (with `None`) straight to the server.
async fn raw_session(hospital: &Hospital, proxy: Option<&TestProxy>) -> RawClient {
    let address = match proxy {
        Some(proxy) => proxy.address(),
        None => cluster().address().parse().expect("the cluster's address"),
    };
    let mut client = RawClient::connect(address).await;
    client.startup_trusted(TRUST_ROLE, &hospital.database).await;
    client
}

/// The server's backends serving `pgseal_trust` in the hospital database (pgseal's upstream
/// connections, since tests log in through it).
async fn trusted_backends(hospital: &Hospital) -> i64 {
    let admin = cluster().connect(&hospital.database).await;
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = $2",
            &[&TRUST_ROLE, &hospital.database],
        )
        .await
        .expect("count backends")
        .get(0)
}

/// Waits until the trusted role has `expected` backends, up to 10 s; returns the last count.
async fn settle_backends(hospital: &Hospital, expected: i64) -> i64 {
    let mut count = trusted_backends(hospital).await;
    for _ in 0..100 {
        if count == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        count = trusted_backends(hospital).await;
    }
    count
}

/// A message as the comparison sees it: its type, and for an error whether pgseal refused it
/// or the server failed it does not matter (both are errors at the same step).
fn shape(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| !matches!(m.tag, b'N' | b'S' | b'K'))
        .map(|m| match m.tag {
            b'D' => format!("D:{}", String::from_utf8_lossy(&m.body)),
            b'C' => format!("C:{}", String::from_utf8_lossy(&m.body)),
            tag => char::from(tag).to_string(),
        })
        .collect()
}

/// Sends `frames`, then a Sync and a marker Query, and reads until the marker's ReadyForQuery:
/// everything the pipeline was answered, whatever the server skipped.
async fn answers(client: &mut RawClient, frames: &[Vec<u8>]) -> Vec<Message> {
    let mut all = frames.to_vec();
    all.push(sync());
    all.push(raw::query("SELECT 'end of pipeline'"));
    client.send_frames(&all).await;
    let mut messages = Vec::new();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(10), client.read_until(b'Z'))
            .await
            .unwrap_or_else(|_| panic!("no answer within 10 s; so far: {:?}", shape(&messages)));
        assert!(
            batch.iter().any(|m| m.tag == b'Z'),
            "the connection closed; so far: {:?}",
            shape(&messages)
        );
        let done = batch
            .iter()
            .any(|m| m.tag == b'D' && String::from_utf8_lossy(&m.body).contains("end of pipeline"));
        messages.extend(batch);
        if done {
            return messages;
        }
    }
}

/// The sequence: a Bind the server rejects, then a simple Query pgseal refuses, an
/// Execute and a Sync. PostgreSQL skips the Query (it skips to Sync); pgseal used to wait for
/// the Query's answer forever, and kept the session when the client left.
#[tokio::test]
async fn a_refused_query_inside_a_failed_group_keeps_the_session_in_step() {
    let (hospital, proxy) = setup().await;
    let mut through = raw_session(&hospital, Some(&proxy)).await;
    let mut direct = raw_session(&hospital, None).await;
    let pipeline = |refused: &str| {
        vec![
            bind_params("", "no_such_statement", &[], &[]),
            raw::query(refused),
            execute("", 0),
        ]
    };
    let got = answers(
        &mut through,
        &pipeline("SELECT id FROM patients ORDER BY length(last_name)"),
    )
    .await;
    let want = answers(&mut direct, &pipeline("SELECT syntax error")).await;
    assert_eq!(shape(&got), shape(&want));
    // And the session is usable afterwards.
    let again = answers(&mut through, &[raw::query("SELECT 41 + 1")]).await;
    assert!(shape(&again).contains(&"D:\0\u{1}\0\0\0\u{2}42".to_string()));
    drop(through);
    drop(direct);
    assert_eq!(settle_backends(&hospital, 0).await, 0);
    proxy.stop().await;
}

/// A client that leaves while a refused message sits in a failed group frees its session and
/// its server connection, however many times it is done (it used to exhaust the server).
#[tokio::test]
async fn clients_leaving_mid_pipeline_free_their_sessions() {
    let (hospital, proxy) = setup().await;
    for _ in 0..10 {
        let mut client = raw_session(&hospital, Some(&proxy)).await;
        client
            .send_frames(&[
                bind_params("", "no_such_statement", &[], &[]),
                raw::query("SELECT id FROM patients ORDER BY length(last_name)"),
                execute("", 0),
                sync(),
                parse_typed("p", "SELECT last_name FROM patients", &[]),
                bind_params("", "p", &[], &[]),
                execute("", 0),
            ])
            .await;
        drop(client);
    }
    assert_eq!(settle_backends(&hospital, 0).await, 0);
    // A client gone between the halves of a message is freed too.
    let mut half = raw_session(&hospital, Some(&proxy)).await;
    let query = raw::query("SELECT 1");
    half.send(&query[..query.len() - 3]).await;
    drop(half);
    assert_eq!(settle_backends(&hospital, 0).await, 0);
    proxy.stop().await;
}

/// One step of a generated pipeline: what pgseal gets, and what the server gets in the direct
/// run (the same, except that a statement pgseal refuses becomes one the server rejects at the
/// same step).
struct Step {
    through: Vec<u8>,
    direct: Vec<u8>,
}

impl Step {
    fn same(frame: Vec<u8>) -> Step {
        Step {
            through: frame.clone(),
            direct: frame,
        }
    }
}

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One random message among: valid, failing on the server, and refused by pgseal, in both
/// protocols, with Syncs and Flushes between.
fn step(rng: &mut Rng) -> Step {
    const REFUSED: &str = "SELECT id FROM patients ORDER BY length(last_name)";
    const REJECTED: &str = "SELECT syntax error";
    match rng.below(12) {
        0 => Step::same(raw::query("SELECT city FROM patients WHERE id < 0")),
        1 => Step::same(raw::query("SELECT 1/0")),
        2 => Step {
            through: raw::query(REFUSED),
            direct: raw::query(REJECTED),
        },
        3 => Step::same(parse_typed("", "SELECT 7 AS seven", &[])),
        4 => Step {
            through: parse_typed("", REFUSED, &[]),
            direct: parse_typed("", REJECTED, &[]),
        },
        5 => Step::same(parse_typed("", "SELECT 1/(random() * 0)::int", &[])),
        6 => Step::same(bind_params("", "", &[], &[])),
        7 => Step::same(bind_params("", "never_prepared", &[], &[])),
        8 => Step::same(describe(b'P', "")),
        9 => Step::same(execute("", 0)),
        10 => Step::same(sync()),
        _ => Step::same(flush()),
    }
}

/// Generated pipelines mixing failing, refused and valid messages: pgseal answers each exactly
/// as PostgreSQL does (errors at the same steps, the same rows, the same ReadyForQuerys), and
/// every session is freed at the end.
#[tokio::test]
async fn generated_pipelines_are_answered_as_postgres_answers_them() {
    let (hospital, proxy) = setup().await;
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let length = 3 + rng.below(10) as usize;
        let steps: Vec<Step> = (0..length).map(|_| step(&mut rng)).collect();
        let through_frames: Vec<Vec<u8>> = steps.iter().map(|s| s.through.clone()).collect();
        let direct_frames: Vec<Vec<u8>> = steps.iter().map(|s| s.direct.clone()).collect();
        let mut through = raw_session(&hospital, Some(&proxy)).await;
        let mut direct = raw_session(&hospital, None).await;
        let got = answers(&mut through, &through_frames).await;
        let want = answers(&mut direct, &direct_frames).await;
        assert_eq!(
            shape(&got),
            shape(&want),
            "seed {seed}: pgseal and PostgreSQL answer the pipeline differently"
        );
    }
    assert_eq!(settle_backends(&hospital, 0).await, 0);
    proxy.stop().await;
}

/// A client that sends half a message and then nothing is ended after `--message-timeout`
/// with 08P01, and one idle past `--idle-timeout` with 57P05; their server connections go too.
#[tokio::test]
async fn half_sent_messages_and_idle_clients_time_out() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital
        .proxy_with(cluster, |config| {
            config.message_timeout = Duration::from_millis(500);
            config.idle_timeout = Some(Duration::from_secs(2));
        })
        .await;
    let mut half = raw_session(&hospital, Some(&proxy)).await;
    let query = raw::query("SELECT 1");
    half.send(&query[..query.len() - 3]).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), half.read_message())
        .await
        .expect("the session ends");
    assert_eq!(
        ended.and_then(|m| m.sqlstate()).as_deref(),
        Some("08P01"),
        "a half-sent message is ended as a protocol violation"
    );
    assert!(half.closed_within(Duration::from_secs(5)).await);

    // A statement that runs longer than the idle timeout is no idleness.
    let mut waiting = raw_session(&hospital, Some(&proxy)).await;
    let slept = answers(&mut waiting, &[raw::query("SELECT pg_sleep(3)")]).await;
    assert!(slept.iter().any(|m| m.tag == b'D'), "{:?}", shape(&slept));
    drop(waiting);

    let mut idle = raw_session(&hospital, Some(&proxy)).await;
    // Busy for a while (each message restarts the idle clock), then idle.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let answer = answers(&mut idle, &[raw::query("SELECT 1")]).await;
        assert!(answer.iter().any(|m| m.tag == b'D'));
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), idle.read_message())
        .await
        .expect("the idle session ends");
    assert_eq!(ended.and_then(|m| m.sqlstate()).as_deref(), Some("57P05"));
    assert_eq!(settle_backends(&hospital, 0).await, 0);
    proxy.stop().await;
}
