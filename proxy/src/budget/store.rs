//! The PostgreSQL state store (`--state-url`): each account's ledger as one row of
//! `pgseal.budget_state`, read and written under a row lock, with the database's clock.
//!
//! ```sql
//! CREATE TABLE pgseal.budget_state (
//!     role text, end_user text DEFAULT '',        -- the account ('' = the role itself)
//!     tokens int8, credit int8, updated_us int8,  -- the token bucket (µs of the DB's clock)
//!     hour int8[], day int8[],                    -- caps' windows: slot, rows, slot, rows…
//!     over int2,                                  -- limits crossed (one alert per crossing)
//!     touched timestamptz,                        -- last lease, for operators
//!     PRIMARY KEY (role, end_user));
//! ```
//!
//! A lease is one short transaction: `SELECT … FOR UPDATE` (creating the row, bucket full, on
//! first use), the ledger's arithmetic in Rust ([`Ledger::lease`]) under the database's
//! `clock_timestamp()` — so instances with skewed clocks still agree — then `UPDATE` and
//! `COMMIT`. The row lock serialises instances leasing for the same account, so the rows
//! granted in total never exceed the budget. The schema and table are created on first use
//! under an advisory lock (concurrent first starts do not race). The connection does not use
//! TLS yet: give a URL with `sslmode=disable` (or `prefer`) on a trusted network.
//!
//! A row that does not decode (edited by hand, say) is an error for that account, which the
//! caller treats like an unreachable store (fail closed); deleting the row resets the account.

use std::str::FromStr as _;
use std::time::Duration;

use pgseal_policies::Budget;
use tokio_postgres::{Client, NoTls};

use super::decision::AccountKey;
use super::ledger::{Bucket, Crossings, Grant, Ledger, Window};

/// Longest a store operation may take before it counts as a failure.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Advisory lock key serialising schema creation ("pgseal" in ASCII).
const SCHEMA_LOCK: i64 = 0x7067_7365_616c;

const SCHEMA_SQL: &str = "\
CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE TABLE IF NOT EXISTS pgseal.budget_state (
    role       text        NOT NULL,
    end_user   text        NOT NULL DEFAULT '',
    tokens     int8        NOT NULL,
    credit     int8        NOT NULL DEFAULT 0,
    updated_us int8        NOT NULL,
    hour       int8[]      NOT NULL DEFAULT '{}',
    day        int8[]      NOT NULL DEFAULT '{}',
    over       int2        NOT NULL DEFAULT 0,
    touched    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, end_user)
);
COMMENT ON TABLE pgseal.budget_state IS
    'pgseal export budgets: one ledger per account (role, end user). Leased by pgseal; delete a row to reset an account.';
";

const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::int8";

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error("invalid --state-url: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or answered with an error.
    #[error("budget state store: {0}")]
    Database(String),
    /// The database did not answer in time.
    #[error("budget state store did not answer within {0:?}")]
    Timeout(Duration),
    /// An account's row does not decode.
    #[error(
        "budget state of {account} is corrupt ({why}); delete its row in pgseal.budget_state to reset it"
    )]
    Corrupt {
        /// The account.
        account: String,
        /// What is wrong.
        why: &'static str,
    },
}

use crate::pgerror::describe;

fn db(err: tokio_postgres::Error) -> StoreError {
    StoreError::Database(describe(&err))
}

/// A connection to the store, reopened on demand after a failure.
pub(crate) struct Store {
    config: tokio_postgres::Config,
    client: Option<Client>,
}

impl Store {
    /// Connects and creates the schema if needed.
    pub(crate) async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(STORE_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pgseal budgets");
        }
        let mut store = Store {
            config,
            client: None,
        };
        store.client().await?;
        Ok(store)
    }

    /// The open connection, reconnecting (and checking the schema) when it was lost.
    async fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let (mut client, connection) = timeout(self.config.connect(NoTls)).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("budget state store connection ended: {}", describe(&e));
                }
            });
            let tx = timeout(client.transaction()).await?;
            timeout(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])).await?;
            timeout(tx.batch_execute(SCHEMA_SQL)).await?;
            timeout(tx.commit()).await?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Database("not connected".into()))
    }

    /// Forgets the connection (after an error, so the next call reconnects).
    pub(crate) fn reset(&mut self) {
        self.client = None;
    }

    /// Leases rows for `account`: counts `overdraft` rows already let through (alert-action rows
    /// sent without a lease), then asks the ledger for `need` to `want` rows.
    pub(crate) async fn lease(
        &mut self,
        account: &AccountKey,
        budget: &Budget,
        want: u64,
        need: u64,
        overdraft: u64,
    ) -> Result<(Grant, Crossings), StoreError> {
        let result = self
            .update(account, budget, |ledger, now| {
                if overdraft > 0 {
                    ledger.force(budget, overdraft, now);
                }
                ledger.lease(budget, want, need, now)
            })
            .await;
        if matches!(
            result,
            Err(StoreError::Database(_) | StoreError::Timeout(_))
        ) {
            self.reset();
        }
        result
    }

    /// Returns unused leased rows to the account's bucket.
    pub(crate) async fn give_back(
        &mut self,
        account: &AccountKey,
        budget: &Budget,
        rows: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .update(account, budget, |ledger, now| {
                ledger.give_back(budget, rows, now)
            })
            .await;
        if matches!(
            result,
            Err(StoreError::Database(_) | StoreError::Timeout(_))
        ) {
            self.reset();
        }
        result
    }

    /// Runs `change` on the account's ledger inside one transaction, under its row lock.
    async fn update<T>(
        &mut self,
        account: &AccountKey,
        budget: &Budget,
        change: impl FnOnce(&mut Ledger, u64) -> T,
    ) -> Result<T, StoreError> {
        let role: &str = &account.role;
        let end_user: &str = account.end_user.as_deref().unwrap_or("");
        let client = self.client().await?;
        let tx = timeout(client.transaction()).await?;
        let select = format!(
            "SELECT tokens, credit, updated_us, hour, day, over, {NOW_US} \
             FROM pgseal.budget_state WHERE role = $1 AND end_user = $2 FOR UPDATE"
        );
        let mut row = timeout(tx.query_opt(&select, &[&role, &end_user])).await?;
        if row.is_none() {
            let burst = i64::try_from(budget.burst).unwrap_or(i64::MAX);
            let insert = format!(
                "INSERT INTO pgseal.budget_state (role, end_user, tokens, updated_us) \
                 VALUES ($1, $2, $3, {NOW_US}) ON CONFLICT DO NOTHING"
            );
            timeout(tx.execute(&insert, &[&role, &end_user, &burst])).await?;
            row = timeout(tx.query_opt(&select, &[&role, &end_user])).await?;
        }
        let row = row.ok_or_else(|| StoreError::Database("account row vanished".into()))?;
        let corrupt = |why| StoreError::Corrupt {
            account: account.to_string(),
            why,
        };
        let now: i64 = row.try_get(6).map_err(db)?;
        let now = u64::try_from(now).map_err(|_| corrupt("the database clock is before 1970"))?;
        let mut ledger = decode(
            row.try_get(0).map_err(db)?,
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
            &row.try_get::<_, Vec<i64>>(3).map_err(db)?,
            &row.try_get::<_, Vec<i64>>(4).map_err(db)?,
            row.try_get(5).map_err(db)?,
        )
        .map_err(corrupt)?;
        let out = change(&mut ledger, now);
        let (hour, day) = (encode(&ledger.hour), encode(&ledger.day));
        let tokens = ledger.bucket.tokens;
        let credit = i64::try_from(ledger.bucket.credit).unwrap_or(i64::MAX);
        let updated = i64::try_from(ledger.bucket.updated).unwrap_or(i64::MAX);
        let over = i16::from(ledger.over);
        timeout(tx.execute(
            "UPDATE pgseal.budget_state SET tokens = $3, credit = $4, updated_us = $5, \
             hour = $6, day = $7, over = $8, touched = now() WHERE role = $1 AND end_user = $2",
            &[
                &role, &end_user, &tokens, &credit, &updated, &hour, &day, &over,
            ],
        ))
        .await?;
        timeout(tx.commit()).await?;
        Ok(out)
    }
}

/// Runs a database call under [`STORE_TIMEOUT`].
async fn timeout<T>(
    call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match crate::timer::timeout(STORE_TIMEOUT, call).await {
        Ok(result) => result.map_err(db),
        Err(_) => Err(StoreError::Timeout(STORE_TIMEOUT)),
    }
}

/// A ledger from its row; the error says what does not decode.
fn decode(
    tokens: i64,
    credit: i64,
    updated: i64,
    hour: &[i64],
    day: &[i64],
    over: i16,
) -> Result<Ledger, &'static str> {
    let credit = u64::try_from(credit).map_err(|_| "negative credit")?;
    let updated = u64::try_from(updated).map_err(|_| "negative updated_us")?;
    let over = u8::try_from(over)
        .ok()
        .filter(|o| *o < 8)
        .ok_or("unknown over flags")?;
    let pairs = |flat: &[i64]| -> Option<Vec<(u64, u64)>> {
        if flat.len() % 2 != 0 {
            return None;
        }
        flat.chunks_exact(2)
            .map(|p| Some((u64::try_from(p[0]).ok()?, u64::try_from(p[1]).ok()?)))
            .collect()
    };
    let hour = pairs(hour)
        .and_then(|p| Window::hourly().with_pairs(&p))
        .ok_or("malformed hour window")?;
    let day = pairs(day)
        .and_then(|p| Window::daily().with_pairs(&p))
        .ok_or("malformed day window")?;
    Ok(Ledger {
        bucket: Bucket {
            tokens,
            credit,
            updated,
        },
        hour,
        day,
        over,
    })
}

/// A window as a flat array: slot, rows, slot, rows…
fn encode(window: &Window) -> Vec<i64> {
    window
        .pairs()
        .flat_map(|(slot, rows)| {
            [
                i64::try_from(slot).unwrap_or(i64::MAX),
                i64::try_from(rows).unwrap_or(i64::MAX),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_corruption_is_named() {
        let ledger = decode(5, 7, 1_000, &[3, 10, 4, 2], &[0, 12], 2).unwrap();
        assert_eq!(ledger.hour.total(), 12);
        assert_eq!(encode(&ledger.hour), [3, 10, 4, 2]);
        assert_eq!(encode(&ledger.day), [0, 12]);
        assert_eq!(
            decode(5, -1, 0, &[], &[], 0).unwrap_err(),
            "negative credit"
        );
        assert_eq!(
            decode(5, 0, 0, &[1], &[], 0).unwrap_err(),
            "malformed hour window"
        );
        assert_eq!(
            decode(5, 0, 0, &[], &[2, 1, 1, 1], 0).unwrap_err(),
            "malformed day window"
        );
        assert_eq!(
            decode(5, 0, 0, &[], &[-2, 1], 0).unwrap_err(),
            "malformed day window"
        );
        assert_eq!(
            decode(5, 0, 0, &[], &[], 9).unwrap_err(),
            "unknown over flags"
        );
    }
}
