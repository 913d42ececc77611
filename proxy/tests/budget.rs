//! Export budgets in memory: the token bucket and caps on a hand-moved clock, actions, alerts
//! once per crossing, accounts shared by sessions and threads, end users, and the webhook.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgseal::budget::{
    Acquired, Budgets, CollectAlerts, Decision, Exceeded, Limit, ManualClock, MonotonicClock,
    SQLSTATE_BUDGET_EXCEEDED, SQLSTATE_END_USER_REQUIRED, Tally, WebhookSender,
};
use pgseal_policies::{BudgetScope, CompiledPolicy};

const POLICY: &str = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"

[classes.support]
roles = ["ehr_admin", "ehr_dba"]
[classes.support.budget]
rate = "60/minute"
burst = 10
per_hour = 25
per_day = 40
action = "throttle"
on_cap = "block"

[classes.batch]
roles = ["ehr_batch"]
[classes.batch.budget]
rate = "1/second"
burst = 100
action = "block"

[classes.app]
roles = ["ehr_app"]
[classes.app.budget]
rate = "1/second"
burst = 5
per_hour = 8
action = "alert"
on_cap = "alert"
counts = "all"

[classes.clinic]
roles = ["ehr_clinic"]
require_end_user = true
[classes.clinic.budget]
rate = "1000/second"
burst = 12
action = "block"
[classes.clinic.end_user_budget]
rate = "1/minute"
burst = 5
per_day = 7
action = "throttle"
on_cap = "block"
"#;

fn setup() -> (Budgets, ManualClock, CollectAlerts) {
    let policy = Arc::new(CompiledPolicy::from_toml("t.toml", POLICY).unwrap());
    let clock = ManualClock::new();
    let budgets = Budgets::in_memory(policy, clock.shared());
    let alerts = CollectAlerts::new();
    budgets.set_alert_sink(Arc::new(alerts.clone()));
    (budgets, clock, alerts)
}

fn allowed(d: &Decision) -> bool {
    d.allows()
}

#[test]
fn throttle_paces_to_the_rate_then_the_cap_blocks() {
    let (budgets, clock, alerts) = setup();
    let admin = budgets.account("ehr_admin", None);
    for _ in 0..10 {
        assert_eq!(admin.take(1), Decision::Allow);
    }
    // The bucket is empty: wait exactly one token's time (1 s at 60/minute).
    assert_eq!(admin.take(1), Decision::Wait(Duration::from_secs(1)));
    clock.advance(Duration::from_millis(400));
    assert_eq!(admin.take(1), Decision::Wait(Duration::from_millis(600)));
    clock.advance(Duration::from_millis(600));
    assert_eq!(admin.take(1), Decision::Allow);
    // One alert for the crossing, not one per throttled row.
    assert_eq!(alerts.events().len(), 1);
    assert_eq!(alerts.events()[0].limit, "rate");
    assert_eq!(alerts.events()[0].action, "throttle");

    // Paced at the rate, up to the hourly cap of 25 rows.
    let mut sent = 11;
    while sent < 25 {
        clock.advance(Duration::from_secs(1));
        assert_eq!(admin.take(1), Decision::Allow);
        sent += 1;
    }
    clock.advance(Duration::from_secs(1));
    let Decision::Block(reason) = admin.take(1) else {
        panic!("the hourly cap blocks");
    };
    assert_eq!(reason.limit, Limit::PerHour);
    assert_eq!(reason.sqlstate(), SQLSTATE_BUDGET_EXCEEDED);
    assert_eq!(
        reason.message(),
        "export budget of role ehr_admin (class support) exceeded: 25 rows per hour"
    );
    assert!(
        reason
            .hint()
            .unwrap()
            .contains("the rows already sent were delivered")
    );
    let frees_in = reason.frees_in.unwrap();
    assert!(frees_in > Duration::from_secs(59 * 60) && frees_in <= Duration::from_secs(61 * 60));
    let events = alerts.events();
    assert_eq!(events.len(), 2);
    assert_eq!((events[1].limit, events[1].action), ("per_hour", "block"));
    assert_eq!(events[1].role, "ehr_admin");
    assert_eq!(events[1].class, "support");

    // The next hour frees it, until the daily cap (40).
    clock.advance(frees_in);
    let mut more = 0;
    loop {
        match admin.take(1) {
            Decision::Allow => more += 1,
            Decision::Wait(d) => clock.advance(d),
            Decision::Block(reason) => {
                assert_eq!(reason.limit, Limit::PerDay);
                break;
            }
            Decision::Alert(_) => panic!("no alert action here"),
        }
    }
    assert_eq!(25 + more, 40);
}

#[test]
fn roles_of_a_class_have_their_own_buckets_and_sessions_share_them() {
    let (budgets, _clock, _) = setup();
    // Four sessions of one role share one budget.
    let sessions: Vec<_> = (0..4).map(|_| budgets.account("ehr_batch", None)).collect();
    let mut total = 0;
    for round in 0.. {
        let d = sessions[round % 4].take(1);
        if !allowed(&d) {
            let Decision::Block(reason) = d else {
                panic!("block action: {d:?}")
            };
            assert_eq!(reason.limit, Limit::Rate);
            break;
        }
        total += 1;
    }
    assert_eq!(total, 100);
    // Another role of the class has its own full bucket.
    assert_eq!(budgets.account("ehr_dba", None).take(10), Decision::Allow);
    // A role the policy does not name gets the default budget (burst 10 here: tightened).
    let stranger = budgets.account("mallory", None);
    assert_eq!(&*stranger.class(), "default");
    let mut n = 0;
    while stranger.take(1).allows() {
        n += 1;
    }
    assert_eq!(n, stranger.budget().burst);
}

#[test]
fn concurrent_takers_share_one_budget_exactly() {
    let (budgets, _clock, alerts) = setup();
    let granted = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let account = budgets.account("ehr_batch", None);
            let granted = granted.clone();
            scope.spawn(move || {
                loop {
                    match account.take(1) {
                        Decision::Allow => {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                        Decision::Block(_) => break,
                        other => panic!("{other:?}"),
                    }
                }
            });
        }
    });
    // The clock did not move: exactly the burst, however the threads interleaved.
    assert_eq!(granted.load(Ordering::Relaxed), 100);
    assert_eq!(alerts.events().len(), 1, "one crossing, eight threads");
}

#[test]
fn alert_lets_rows_through_and_raises_once_per_crossing() {
    let (budgets, clock, alerts) = setup();
    let app = budgets.account("ehr_app", None);
    for _ in 0..5 {
        assert_eq!(app.take(1), Decision::Allow);
    }
    let past_rate = Decision::Alert(Exceeded {
        scope: BudgetScope::Role,
        limit: Limit::Rate,
    });
    assert_eq!(app.take(1), past_rate);
    assert_eq!(app.take(1), past_rate);
    assert_eq!(alerts.events().len(), 1);
    // Past the hourly cap (8), with on_cap = alert: still through, one more event.
    assert!(matches!(
        app.take(1),
        Decision::Alert(Exceeded {
            limit: Limit::Rate,
            ..
        })
    ));
    assert_eq!(
        app.take(1),
        Decision::Alert(Exceeded {
            scope: BudgetScope::Role,
            limit: Limit::PerHour
        })
    );
    let events = alerts.events();
    assert_eq!(events.len(), 2);
    assert_eq!((events[1].limit, events[1].action), ("per_hour", "alert"));
    // counts = "all": rows of results without sealed tables count too.
    assert!(app.counts_unsealed());
    assert!(app.take_unsealed(1).allows());
    assert_eq!(alerts.events().len(), 2);
    // Two hours on, everything is back and the next crossing raises again.
    clock.advance(Duration::from_secs(2 * 3600 + 120));
    for _ in 0..5 {
        assert_eq!(app.take(1), Decision::Allow);
    }
    assert_eq!(app.take(1), past_rate);
    assert_eq!(alerts.events().len(), 3);
}

#[test]
fn end_users_have_their_own_budgets_on_top_of_the_roles() {
    let (budgets, clock, _) = setup();
    // require_end_user: refused without one, before anything is counted.
    let anonymous = budgets.account("ehr_clinic", None);
    assert!(anonymous.missing_end_user());
    assert_eq!(
        anonymous.check_end_user().unwrap_err().limit,
        Limit::EndUserRequired
    );
    assert!(
        budgets
            .account("ehr_clinic", Some("x"))
            .check_end_user()
            .is_ok()
    );
    let Decision::Block(reason) = anonymous.take(1) else {
        panic!("refused")
    };
    assert_eq!(reason.limit, Limit::EndUserRequired);
    assert_eq!(reason.sqlstate(), SQLSTATE_END_USER_REQUIRED);
    assert_eq!(
        reason.message(),
        "role ehr_clinic (class clinic) must declare its end user to read sealed tables"
    );
    assert!(reason.hint().unwrap().contains("pgseal_user"));
    // Rows of results without sealed tables are not concerned.
    assert_eq!(anonymous.take_unsealed(1), Decision::Allow);

    let martin = budgets.account("ehr_clinic", Some("dr.martin"));
    let durand = budgets.account("ehr_clinic", Some("dr.durand"));
    assert_eq!(martin.end_user(), Some("dr.martin"));
    assert_eq!(martin.end_user_budget().unwrap().burst, 5);
    // Each clinician: burst 5, then throttled at 1/minute.
    for _ in 0..5 {
        assert_eq!(martin.take(1), Decision::Allow);
    }
    assert_eq!(martin.take(1), Decision::Wait(Duration::from_secs(60)));
    for _ in 0..5 {
        assert_eq!(durand.take(1), Decision::Allow);
    }
    // The role's own total (burst 12) holds them together: 10 taken, 2 left.
    let bernard = budgets.account("ehr_clinic", Some("dr.bernard"));
    assert_eq!(bernard.take(2), Decision::Allow);
    let Decision::Block(reason) = bernard.take(1) else {
        panic!("the role's budget blocks")
    };
    assert_eq!(reason.limit, Limit::Rate);
    assert_eq!(reason.account.end_user, None);
    assert_eq!(
        reason.message(),
        "export budget of role ehr_clinic (class clinic) exceeded: rate 1000/second (burst 12)"
    );
    // The refusal gave bernard's own token back: after the role refills, it is still there.
    clock.advance(Duration::from_secs(1));
    assert_eq!(bernard.take(3), Decision::Allow);
    // (a second of its own refill is already there)
    assert_eq!(bernard.take(1), Decision::Wait(Duration::from_secs(59)));
    // An end user's daily cap (7) blocks them and names them.
    clock.advance(Duration::from_secs(120));
    assert_eq!(martin.take(2), Decision::Allow);
    let Decision::Block(reason) = martin.take(1) else {
        panic!("daily cap")
    };
    assert_eq!(reason.limit, Limit::PerDay);
    assert_eq!(
        reason.message(),
        "export budget of end user \"dr.martin\" of role ehr_clinic (class clinic) exceeded: 7 \
         rows per day"
    );
    // A handle asked again for the same end user is the same account.
    let Decision::Block(_) = budgets.account("ehr_clinic", Some("dr.martin")).take(1) else {
        panic!("same account")
    };
}

#[test]
fn idle_accounts_are_forgotten_only_when_nothing_is_given_away() {
    let (budgets, clock, _) = setup();
    let user = budgets.account("ehr_clinic", Some("dr.petit"));
    user.take(1);
    drop(user);
    assert_eq!(budgets.len(), 2);
    // Held or not at rest: kept.
    let held = budgets.account("ehr_batch", None);
    assert_eq!(budgets.sweep(), 0);
    // A day later the clinician's account is as good as new, and nobody holds it.
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(budgets.sweep(), 2);
    assert_eq!(budgets.len(), 1);
    drop(held);
    assert_eq!(budgets.sweep(), 1);
    assert!(budgets.is_empty());
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_on_tokio_time_and_tallies() {
    // The paused runtime's clock only moves when every task sleeps: no real waiting here.
    let policy = Arc::new(CompiledPolicy::from_toml("t.toml", POLICY).unwrap());
    let budgets = Budgets::in_memory(policy, MonotonicClock::shared());
    let admin = budgets.account("ehr_admin", None);
    let mut tally = Tally::default();
    for _ in 0..10 {
        let got = admin.acquire(1).await;
        assert_eq!(
            got,
            Acquired::Allowed {
                waited: Duration::ZERO,
                alert: None
            }
        );
        tally.record(1, &got);
    }
    let got = admin.acquire(3).await;
    let Acquired::Allowed {
        waited,
        alert: None,
    } = got
    else {
        panic!("{got:?}")
    };
    assert_eq!(waited, Duration::from_secs(3));
    tally.record(3, &got);
    assert_eq!(tally.rows_allowed, 13);
    assert_eq!(tally.rows_throttled, 3);
    assert_eq!(tally.outcome(), "throttle");

    let batch = budgets.account("ehr_batch", None);
    assert!(batch.take(100).allows());
    let got = batch.acquire(1).await;
    let Acquired::Blocked { reason, .. } = &got else {
        panic!("{got:?}")
    };
    assert_eq!(reason.limit, Limit::Rate);
    tally.record(101, &got);
    assert_eq!(tally.outcome(), "block");
    let audit = pgseal::audit::AuditBudget::from(&tally);
    assert_eq!(audit.decision, "block");
    assert_eq!(audit.limit, Some("rate"));
    assert_eq!(audit.scope, Some("role"));
    assert_eq!(audit.waited_ms, 3000);
}

#[tokio::test]
async fn the_webhook_posts_each_alert_as_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/pgseal", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut requests = Vec::new();
        for status in ["204 No Content", "500 Internal Server Error"] {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            stream.write_all(response.as_bytes()).await.unwrap();
            requests.push(String::from_utf8(request).unwrap());
        }
        requests
    });

    let (budgets, _clock, _) = setup();
    let (webhook, task) = WebhookSender::start(&url, 16, None).unwrap();
    budgets.set_alert_sink(Arc::new(webhook.clone()));
    let batch = budgets.account("ehr_batch", None);
    while batch.take(1).allows() {}
    let admin = budgets.account("ehr_admin", None);
    while admin.take(1).allows() {}

    let requests = server.await.unwrap();
    assert!(requests[0].starts_with("POST /hooks/pgseal HTTP/1.1\r\n"));
    assert!(requests[0].contains("Content-Type: application/json\r\n"));
    let body = requests[0].split_once("\r\n\r\n").unwrap().1;
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["role"], "ehr_batch");
    assert_eq!(event["limit"], "rate");
    assert_eq!(event["action"], "block");
    assert_eq!(event["scope"], "role");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("statements are blocked")
    );
    // The delivery task ends when the last sender goes (accounts hold the registry's).
    let stats = webhook.stats().clone();
    drop((budgets, batch, admin, webhook));
    task.await.unwrap();
    assert_eq!(stats.sent.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed.load(Ordering::Relaxed), 1, "the 500 answer");
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn the_webhook_url_must_be_http() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let err = WebhookSender::start("ftp://x", 4, None).err().unwrap();
        assert!(err.to_string().starts_with("invalid --alert-webhook URL"));
    });
}

#[test]
fn a_reloaded_policy_holds_accounts_in_use_to_its_limits_from_what_they_used() {
    let (budgets, _clock, _alerts) = setup();
    // A session's account, held across the reload (a long export, say).
    let held = budgets.account("ehr_batch", None);
    for _ in 0..100 {
        assert!(allowed(&held.take(1)));
    }
    assert!(!allowed(&held.take(1)), "the burst is spent");
    // The reload lowers the burst: the account it already holds is held to it, counts kept.
    let lowered = POLICY.replace("burst = 100", "burst = 50");
    budgets.set_policy(Arc::new(
        CompiledPolicy::from_toml("p.toml", &lowered).unwrap(),
    ));
    assert_eq!(held.budget().burst, 50, "at once, not when next asked for");
    let fresh = budgets.account("ehr_batch", None);
    assert_eq!(fresh.budget().burst, 50);
    assert!(!allowed(&held.take(1)) && !allowed(&fresh.take(1)));
    // A role moved to another class takes that class's name and budget.
    let moved = POLICY
        .replace("roles = [\"ehr_batch\"]", "roles = [\"ehr_nightly\"]")
        .replace(
            "roles = [\"ehr_admin\", \"ehr_dba\"]",
            "roles = [\"ehr_admin\", \"ehr_dba\", \"ehr_batch\"]",
        );
    budgets.set_policy(Arc::new(
        CompiledPolicy::from_toml("p.toml", &moved).unwrap(),
    ));
    assert_eq!(&*held.class(), "support");
    let support = budgets.account("ehr_batch", None);
    assert_eq!(&*support.class(), "support");
    assert_eq!(held.budget().per_day, Some(40));
}
