//! What the export-budget tests share: the hospital with budgets small enough to exhaust, a
//! proxy over it (with an audit trail when asked), and a reader that counts what arrives.

use std::path::PathBuf;

use futures_util::{StreamExt, pin_mut};

use crate::hospital::{Hospital, small_budgets_policy};
use crate::{Cluster, TestProxy};

/// A hospital database and the small-budgets policy, in a temporary directory that also holds
/// whatever a test writes (audit trails, edited policies).
pub struct BudgetSetup {
    /// The database, its roles and keyring.
    pub hospital: Hospital,
    /// The policy with small budgets ([`small_budgets_policy`]).
    pub policy: PathBuf,
    /// The test's directory.
    pub dir: tempfile::TempDir,
}

impl BudgetSetup {
    /// A fresh hospital (no patients yet) and the small-budgets policy.
    pub fn new(cluster: &Cluster) -> BudgetSetup {
        let hospital = Hospital::create(cluster);
        let dir = tempfile::tempdir().unwrap();
        let policy = small_budgets_policy(dir.path());
        BudgetSetup {
            hospital,
            policy,
            dir,
        }
    }

    /// pgseal over the hospital with the small-budgets policy, then `adjust`.
    pub async fn proxy(
        &self,
        cluster: &Cluster,
        adjust: impl FnOnce(&mut pgseal::config::ServeConfig),
    ) -> TestProxy {
        let policy = self.policy.clone();
        self.hospital
            .proxy_with(cluster, move |config| {
                config.policy = Some(policy);
                adjust(config);
            })
            .await
    }

    /// [`BudgetSetup::proxy`] writing its audit trail to `audit.jsonl` in the test's
    /// directory; returns the trail's path too.
    pub async fn audited_proxy(&self, cluster: &Cluster) -> (TestProxy, PathBuf) {
        let audit = self.dir.path().join("audit.jsonl");
        let trail = audit.to_str().unwrap().to_string();
        let proxy = self.proxy(cluster, |c| c.audit = Some(trail)).await;
        (proxy, audit)
    }
}

/// Streams `sql` (extended protocol, as tokio-postgres does), counting rows; returns the rows
/// received and the SQLSTATE it ended with, if it failed.
pub async fn stream(client: &tokio_postgres::Client, sql: &str) -> (usize, Option<String>) {
    let rows = match client.query_raw(sql, Vec::<String>::new()).await {
        Ok(rows) => rows,
        Err(e) => return (0, e.code().map(|c| c.code().to_string())),
    };
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.next().await {
        match row {
            Ok(_) => count += 1,
            Err(e) => return (count, e.code().map(|c| c.code().to_string())),
        }
    }
    (count, None)
}
