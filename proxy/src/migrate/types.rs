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

/// The type to give a decrypted column whose [`restore_target`] is `target`, and a note when it
/// is not that one. The original type recorded by `encrypt` may be narrower than the policy's
/// (a `character(3)`, a domain over `varchar(8)`, a `numeric(10,2)` declared `text` or
/// `numeric`) and pgseal has accepted values of the policy's type since; an explicit cast would
/// cut or round them without an error. So the original type is given back only when it still
/// exists and every value reads the same through it as through the policy's type; otherwise the
/// column gets the policy's type, and the note says why (never showing a value).
pub async fn fitting_target(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
    target: String,
) -> Result<(String, Option<String>), MigrateError> {
    let declared = column.plain_type.sql_name();
    let is_original = column.original_type.as_deref() == Some(target.as_str());
    if !is_original || column.storage == Storage::Bytea || column.plain_type == PlainType::Bytea {
        return Ok((target, None));
    }
    let fallback = |why: String| {
        let note = format!(
            "{}: {why}; given the policy's type {declared} instead",
            column.name
        );
        Ok((declared.clone(), Some(note)))
    };
    // A name that does not parse as one existing type is never put into SQL.
    let exists = client
        .query_one("SELECT to_regtype($1) IS NOT NULL", &[&target])
        .await
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or(false);
    if !exists {
        return fallback(format!("its original type {target} no longer exists"));
    }
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {c} IS NOT NULL \
         AND ({c}::{target})::text IS DISTINCT FROM ({c}::{declared})::text",
        table.sql,
        c = column.ident
    );
    match client.query_one(&sql, &[]).await {
        Ok(row) => match row.get::<_, i64>(0) {
            0 => Ok((target, None)),
            changed => fallback(format!(
                "{changed} value(s) would change in its original type {target} (cut or rounded)"
            )),
        },
        Err(e) => match e.code().map(|c| c.code().to_string()) {
            // Data exceptions and integrity violations (a domain's CHECK): values that do not
            // fit. The server's message may quote a value, so only the SQLSTATE is told.
            Some(code) if code.starts_with("22") || code.starts_with("23") => fallback(format!(
                "some values do not fit its original type {target} (SQLSTATE {code})"
            )),
            _ => Err(MigrateError::db(
                format!("checking {}'s values against {target}", column.name),
                &e,
            )),
        },
    }
}

/// Gives a decrypted column its type `target` back.
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
