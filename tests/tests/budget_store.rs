//! Shared budgets in PostgreSQL (`--state-url`), against the test cluster: two registries — two
//! pgseal instances — share one account and never let more through than its budget, the state
//! survives a restart, and a broken or unreachable store fails closed.

use std::sync::Arc;
use std::time::Duration;

use pgseal::budget::{Acquired, Budgets, CollectAlerts, Limit, MonotonicClock};
use pgseal_policies::CompiledPolicy;
use pgseal_tests::cluster;

/// Burst 30 then a token an hour; a daily cap of 40 (so the cap is near from the start and
/// leases are exact).
const POLICY: &str = r#"
[classes.support]
roles = ["ehr_admin"]
[classes.support.budget]
rate = "1/hour"
burst = 30
per_day = 40
action = "block"
on_cap = "block"

[classes.app]
roles = ["ehr_app"]
[classes.app.budget]
rate = "1000/second"
burst = 5000
action = "throttle"

[classes.clinic]
roles = ["ehr_clinic"]
[classes.clinic.budget]
rate = "1000/second"
burst = 5000
[classes.clinic.end_user_budget]
rate = "1/hour"
burst = 3
action = "block"
"#;

fn policy() -> Arc<CompiledPolicy> {
    Arc::new(CompiledPolicy::from_toml("t.toml", POLICY).unwrap())
}

async fn instance(url: &str) -> Budgets {
    Budgets::shared(policy(), url, MonotonicClock::shared())
        .await
        .expect("the store is reachable")
}

/// Takes rows one at a time until refused; returns how many went.
async fn drain(budgets: &Budgets, role: &str, end_user: Option<&str>) -> (u64, Limit) {
    let account = budgets.account(role, end_user);
    let mut allowed = 0;
    loop {
        match account.acquire(1).await {
            Acquired::Allowed { .. } => allowed += 1,
            Acquired::Blocked { reason, .. } => return (allowed, reason.limit),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_an_account_and_it_survives_restarts() {
    let cluster = cluster();
    let database = cluster.create_database("budget_store");
    let url = cluster.url(&database);
    let a = instance(&url).await;
    let b = instance(&url).await;
    assert!(a.is_shared());

    // Eight sessions, four per instance, drain one account concurrently.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let budgets = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            drain(&budgets, "ehr_admin", None).await
        }));
    }
    let mut total = 0;
    for task in tasks {
        let (allowed, limit) = task.await.unwrap();
        assert_eq!(limit, Limit::Rate);
        total += allowed;
    }
    // The burst, exactly: never more, and nothing stranded in a lease.
    assert_eq!(total, 30);

    // Restart: both instances go (their unused leases back to the store), new ones come.
    a.shutdown().await;
    b.shutdown().await;
    drop((a, b));
    let c = instance(&url).await;
    let (allowed, limit) = drain(&c, "ehr_admin", None).await;
    assert_eq!(
        (allowed, limit),
        (0, Limit::Rate),
        "the spent budget survived the restart"
    );
    // Another account is untouched.
    let (allowed, _) = drain(&c, "ehr_clinic", Some("dr.martin")).await;
    assert_eq!(allowed, 3);
    let (allowed, _) = drain(&c, "ehr_clinic", Some("dr.durand")).await;
    assert_eq!(allowed, 3);

    // What the store holds: one row per account.
    let client = cluster.connect(&database).await;
    let rows = client
        .query(
            "SELECT role, end_user, tokens FROM pgseal.budget_state ORDER BY role, end_user",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].0, "ehr_admin");
    assert_eq!(got[0].1, "");
    assert!(got[0].2 <= 0, "{got:?}");
    assert_eq!(
        (got[2].1.as_str(), got[3].1.as_str()),
        ("dr.durand", "dr.martin")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_batch_the_hot_path_and_unused_rows_go_back() {
    let cluster = cluster();
    let database = cluster.create_database("budget_lease");
    let url = cluster.url(&database);
    let a = instance(&url).await;
    let app = a.account("ehr_app", None);
    let started = std::time::Instant::now();
    for _ in 0..2000 {
        assert!(matches!(app.acquire(1).await, Acquired::Allowed { .. }));
    }
    let elapsed_ms = i64::try_from(started.elapsed().as_millis()).unwrap();
    // 2000 rows in leases of 500 (half a second of 1000/second, the eighth of the burst being
    // larger): a handful of store trips. The store's bucket has given out at least the 2000
    // rows sent (it refills at 1 row per ms meanwhile).
    let client = cluster.connect(&database).await;
    let tokens: i64 = client
        .query_one(
            "SELECT tokens FROM pgseal.budget_state WHERE role = 'ehr_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        tokens <= 5000 - 2000 + elapsed_ms + 1,
        "{tokens} after {elapsed_ms} ms"
    );
    // Shutdown returns what was leased and not used.
    a.shutdown().await;
    let after: i64 = client
        .query_one(
            "SELECT tokens FROM pgseal.budget_state WHERE role = 'ehr_app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(after >= tokens, "{after} < {tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_or_a_lost_store_fails_closed() {
    let cluster = cluster();
    let database = cluster.create_database("budget_broken");
    let url = cluster.url(&database);
    let a = instance(&url).await;
    let alerts = CollectAlerts::new();
    a.set_alert_sink(Arc::new(alerts.clone()));
    let client = cluster.connect(&database).await;
    client
        .batch_execute(
            "INSERT INTO pgseal.budget_state (role, end_user, tokens, updated_us, hour) \
             VALUES ('ehr_admin', '', 10, 0, '{1,2,3}')",
        )
        .await
        .unwrap();
    let account = a.account("ehr_admin", None);
    let Acquired::Blocked { reason, .. } = account.acquire(1).await else {
        panic!("a corrupt row must not let rows through");
    };
    assert_eq!(reason.limit, Limit::StoreUnavailable);
    assert_eq!(reason.sqlstate(), "58000");
    let events = alerts.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].limit, "store_unavailable");
    // Deleting the row resets the account.
    client
        .batch_execute("DELETE FROM pgseal.budget_state WHERE role = 'ehr_admin'")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(account.acquire(1).await, Acquired::Allowed { .. }));

    // A store that cannot be reached at startup is an error, with no password in it.
    let unreachable = format!(
        "postgres://postgres:secret-password@127.0.0.1:{}/x?connect_timeout=2",
        pgseal_tests::cluster::free_port().unwrap()
    );
    let err = Budgets::shared(policy(), &unreachable, MonotonicClock::shared())
        .await
        .expect_err("unreachable");
    let text = err.to_string();
    assert!(text.starts_with("budget state store:"), "{text}");
    assert!(!text.contains("secret-password"), "{text}");
    a.shutdown().await;
}
