//! The admin endpoint: `/metrics` parses as Prometheus text, counts what was bumped; unknown
//! paths and methods are refused; `/healthz` is not ready against a closed port.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pgseal::admin::{AdminServer, Health, Metrics};
use pgseal::budget::{AlertEvent, AlertSink, WebhookSender};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A strict reader of the Prometheus text format (0.0.4): every line a comment of the known
/// kinds, or a sample `name{labels} value`; every sample's family declared by `# TYPE` before
/// it; histogram buckets cumulative and ending with `+Inf` equal to `_count`. Returns the
/// samples by `name{labels}`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, value) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
            assert!(valid_name(name), "{line}");
            match kind {
                "HELP" => assert!(value.is_some_and(|v| !v.is_empty()), "{line}"),
                "TYPE" => {
                    let value = value.unwrap();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&value),
                        "{line}"
                    );
                    assert!(
                        types.insert(name.to_owned(), value.to_owned()).is_none(),
                        "TYPE twice: {line}"
                    );
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(valid_name(name), "{line}");
        let mut le = None;
        if !labels.is_empty() {
            // name="value" pairs, values with \\, \" and \n escapes.
            let mut rest = labels;
            loop {
                let (label, after) = rest.split_once("=\"").expect("label=\"value\"");
                assert!(valid_name(label) && !label.starts_with("__"), "{line}");
                let mut chars = after.char_indices();
                let mut value = String::new();
                let end = loop {
                    match chars.next().expect("closing quote") {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                if label == "le" {
                    le = Some(value.clone());
                }
                rest = &after[end + 1..];
                if rest.is_empty() {
                    break;
                }
                rest = rest.strip_prefix(',').expect("labels separated by commas");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if name.ends_with("_bucket") && family != name {
            let le = le.expect("bucket without le");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets
                .entry(family.to_owned())
                .or_default()
                .push((bound, value));
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate {series}"
        );
    }
    for (family, list) in buckets {
        assert!(
            list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{family} buckets"
        );
        let last = list.last().unwrap();
        assert_eq!(last.0, f64::INFINITY);
        assert_eq!(Some(&last.1), samples.get(&format!("{family}_count")));
    }
    samples
}

async fn get(address: std::net::SocketAddr, request: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn metrics_parse_and_count() {
    let metrics = Arc::new(Metrics::new());
    metrics.sessions_total.inc();
    metrics.sessions_active.inc();
    metrics.statements.with(&["ehr_admin"]).inc_by(3);
    metrics.rows.with(&["ehr_admin", "ciphertext"]).inc_by(120);
    metrics.rows.with(&["ehr_billing", "masked"]).inc_by(7);
    metrics.rows_throttled.with(&["ehr_admin"]).inc_by(20);
    metrics.budget_blocks.with(&["ehr_admin", "per_day"]).inc();
    metrics
        .statements_refused
        .with(&["weird \"role\"\\\n", "42501"])
        .inc();
    metrics.open_failures.with(&["public.patients.nir"]).inc();
    metrics.statement_duration.observe(Duration::from_millis(3));
    metrics.statement_duration.observe(Duration::from_secs(100));
    metrics.budget_wait.observe(Duration::from_millis(600));
    let event = AlertEvent::new(
        &pgseal::budget::AccountKey::role("ehr_admin"),
        "support",
        &pgseal_policies::Budget::BUILT_IN_DEFAULT,
        pgseal::budget::Limit::PerDay,
        pgseal_policies::Action::Block,
    );
    metrics.raise(&event);
    let (webhook, _task) = WebhookSender::start("http://127.0.0.1:9/x", 1, None).unwrap();
    metrics.attach_webhook(webhook.stats().clone());

    let health = Health::new(
        "127.0.0.1",
        9,
        Duration::from_secs(1),
        Some(metrics.clone()),
    );
    let server = AdminServer::bind("127.0.0.1:0", metrics.clone(), health)
        .await
        .unwrap();
    let address = server.local_addr().unwrap();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.serve(stop.clone().cancelled_owned()));

    let (head, body) = get(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    let samples = parse_prometheus(&body);
    assert_eq!(samples["pgseal_sessions_total"], 1.0);
    assert_eq!(samples["pgseal_sessions_active"], 1.0);
    assert_eq!(samples["pgseal_statements_total{role=\"ehr_admin\"}"], 3.0);
    assert_eq!(
        samples["pgseal_rows_total{role=\"ehr_admin\",view=\"ciphertext\"}"],
        120.0
    );
    assert_eq!(
        samples["pgseal_rows_total{role=\"ehr_billing\",view=\"masked\"}"],
        7.0
    );
    assert_eq!(
        samples["pgseal_budget_throttled_rows_total{role=\"ehr_admin\"}"],
        20.0
    );
    assert_eq!(
        samples["pgseal_budget_blocked_statements_total{role=\"ehr_admin\",limit=\"per_day\"}"],
        1.0
    );
    assert_eq!(
        samples["pgseal_budget_alerts_total{role=\"ehr_admin\",limit=\"per_day\",action=\"block\"}"],
        1.0
    );
    assert_eq!(
        samples["pgseal_statements_refused_total{role=\"weird \\\"role\\\"\\\\\\n\",sqlstate=\"42501\"}"],
        1.0
    );
    assert_eq!(samples["pgseal_statement_duration_seconds_count"], 2.0);
    assert_eq!(
        samples["pgseal_statement_duration_seconds_bucket{le=\"0.005\"}"],
        1.0
    );
    assert_eq!(
        samples["pgseal_statement_duration_seconds_bucket{le=\"60\"}"],
        1.0
    );
    assert!((samples["pgseal_statement_duration_seconds_sum"] - 100.003).abs() < 1e-6);
    assert_eq!(samples["pgseal_alert_webhook_sent_total"], 0.0);

    // HEAD: the head only. Other paths and methods, bad requests.
    let (head, body) = get(address, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"));
    assert!(body.is_empty());
    let (head, _) = get(address, "GET /admin HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found"), "{head}");
    let (head, _) = get(
        address,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed"),
        "{head}"
    );
    assert!(head.contains("Allow: GET, HEAD"));
    let (head, _) = get(address, "garbage\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request"), "{head}");

    // Nothing listens on port 9 here: not ready, and the gauge says so.
    let (head, body) = get(address, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{head}"
    );
    assert!(
        body.starts_with("not ready: cannot connect to 127.0.0.1:9"),
        "{body}"
    );
    let (_, body) = get(address, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(parse_prometheus(&body)["pgseal_upstream_up"], 0.0);

    stop.cancel();
    serving.await.unwrap();
}

#[test]
fn families_fold_past_their_series_limit() {
    let metrics = Metrics::new();
    for i in 0..pgseal::admin::MAX_SERIES + 5 {
        metrics.statements.with(&[&format!("role_{i}")]).inc();
    }
    let samples = parse_prometheus(&metrics.render());
    assert_eq!(samples["pgseal_statements_total{role=\"_other\"}"], 5.0);
    let series = samples
        .keys()
        .filter(|k| k.starts_with("pgseal_statements_total{"))
        .count();
    assert_eq!(series, pgseal::admin::MAX_SERIES + 1);
}

#[tokio::test]
async fn health_reads_a_postgresql_like_answer() {
    // A fake server answering SSLRequest with 'N' is ready; one answering garbage is not.
    for (answer, ready) in [(b'N', true), (b'S', true), (b'H', false)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            stream.read_exact(&mut request).await.unwrap();
            assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
            stream.write_all(&[answer]).await.unwrap();
        });
        let health = Health::new("127.0.0.1", port, Duration::from_secs(2), None);
        assert_eq!(health.check().await.is_ok(), ready, "{}", answer as char);
        server.await.unwrap();
        // Cached for a second: no second connection needed.
        assert_eq!(health.check().await.is_ok(), ready);
    }
}
