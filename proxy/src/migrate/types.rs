//! Storage type changes: before sealing, a randomized, deterministic or pseudonym column whose
//! type cannot hold ciphertext (`date`, `integer`, `varchar(15)`…) becomes `text`, through the
//! value's text form in the migrator's session (ISO dates, UTC instants: the canonical forms);
//! after opening, `migrate decrypt` gives it its declared type back. Tokenized columns keep
//! theirs. PostgreSQL rewrites the table for most of these changes, under an exclusive lock.

use std::time::Duration;

use pgseal_policies::{PlainType, SealMode};

use super::plan::{ColumnPlan, TablePlan};
use super::{MigrateError, Options};
use crate::protect::column::Storage;

/// How many times a DDL statement is tried again after a lock timeout or a deadlock.
const DDL_RETRIES: u32 = 10;

/// Runs one DDL statement, again after lock timeouts (the session's `lock_timeout` keeps it
/// from queueing the application behind it for long).
pub async fn ddl(
    client: &tokio_postgres::Client,
    sql: &str,
    what: &str,
) -> Result<(), MigrateError> {
    let mut attempt = 0;
    loop {
        match client.batch_execute(sql).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let err = MigrateError::db(what, &e);
                if !err.is_transient() || attempt >= DDL_RETRIES {
                    return Err(err);
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
}

/// Changes a column's storage type to `target` (`text`) before sealing.
pub async fn change(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
    target: &str,
    _options: &Options,
) -> Result<(), MigrateError> {
    ddl(
        client,
        &format!(
            "ALTER TABLE {} ALTER COLUMN {c} TYPE {target} USING {c}::{target}",
            table.qualified,
            c = column.ident
        ),
        &format!("changing {}'s type to {target}", column.name),
    )
    .await
}

/// The type a decrypted column goes back to, when it has another now: the one `encrypt` found
/// (recorded in the progress store), or else the policy's declared type.
pub fn restore_target(column: &ColumnPlan) -> Option<String> {
    if column.mode.is_token() || column.mode == SealMode::Pseudonym {
        return None;
    }
    if let Some(original) = &column.original_type {
        return (*original != column.column_type).then(|| original.clone());
    }
    if PlainType::parse(&column.storage_type).is_ok_and(|t| t == column.plain_type) {
        return None;
    }
    Some(column.plain_type.sql_name())
}

/// Gives a decrypted column its declared type `target` back.
pub async fn restore(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
    target: &str,
    _options: &Options,
) -> Result<(), MigrateError> {
    let c = &column.ident;
    let using = match (column.storage, column.plain_type == PlainType::Bytea) {
        (Storage::Text, true) => format!("decode(substr({c}, 3), 'hex')"),
        (Storage::Bytea, false) => format!("convert_from({c}, 'UTF8')::{target}"),
        _ => format!("{c}::{target}"),
    };
    ddl(
        client,
        &format!(
            "ALTER TABLE {} ALTER COLUMN {c} TYPE {target} USING {using}",
            table.qualified
        ),
        &format!("restoring {}'s type {target}", column.name),
    )
    .await
}
