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
                crate::timer::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
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

/// What [`restore`] did: the type given, if it changed, and a warning for the operator.
pub type Restored = (Option<String>, Option<String>);

/// Gives a decrypted column its type back: the one [`restore_target`] says, when it fits.
///
/// The original type recorded by `encrypt` may be narrower than the policy's (a
/// `character(3)`, a domain over `varchar(8)`, a `numeric(10,2)` declared `text` or `numeric`)
/// and pgseal has accepted values of the policy's type since; an explicit cast would cut or
/// round them without an error. So the original type is given back only when it still exists
/// and every value is equal through it and through the policy's type; otherwise the column
/// gets the policy's type, and the returned warning says why (never showing a value). It all
/// happens in one transaction holding the table's exclusive lock (which the type change takes
/// anyway), after making sure no envelope was written since the last pass: a value sealed by
/// pgseal meanwhile would otherwise be cut by the cast, or left sealed in a plaintext column.
/// Returns the type given (`None` when the type stays) and the warning.
pub async fn restore(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
    target: String,
) -> Result<Restored, MigrateError> {
    let what = format!("restoring {}'s type", column.name);
    let mut attempt = 0;
    loop {
        let mut tx = client
            .transaction()
            .await
            .map_err(|e| MigrateError::db(&what, &e))?;
        match restore_in(&mut tx, table, column, target.clone()).await {
            Ok(outcome) => {
                tx.commit().await.map_err(|e| MigrateError::db(&what, &e))?;
                return Ok(outcome);
            }
            Err(err) if err.is_transient() && attempt < DDL_RETRIES => {
                drop(tx);
                attempt += 1;
                crate::timer::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn restore_in(
    tx: &mut tokio_postgres::Transaction<'_>,
    table: &TablePlan,
    column: &ColumnPlan,
    target: String,
) -> Result<Restored, MigrateError> {
    let what = format!("restoring {}'s type", column.name);
    let db = |e: tokio_postgres::Error| MigrateError::db(&what, &e);
    let c = &column.ident;
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        table.sql
    ))
    .await
    .map_err(db)?;
    if column.crypto.has_marker() {
        let sealed: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE {c} IS NOT NULL AND pgseal.is_sealed({c})",
                    table.sql
                ),
                &[],
            )
            .await
            .map_err(db)?
            .get(0);
        if sealed > 0 {
            return Err(MigrateError::WrittenBehind {
                column: column.name.clone(),
                count: sealed,
                passes: 1,
                form: "sealed",
            });
        }
    }
    let (target, warning) = fitting(tx, table, column, target).await?;
    if PlainType::parse(&column.column_type).is_ok_and(|t| t.sql_name() == target)
        || column.column_type == target
    {
        return Ok((None, warning));
    }
    let using = match (column.storage, column.plain_type == PlainType::Bytea) {
        (Storage::Text, true) => format!("decode(substr({c}, 3), 'hex')"),
        (Storage::Bytea, false) => format!("convert_from({c}, 'UTF8')::{target}"),
        _ => format!("{c}::{target}"),
    };
    tx.batch_execute(&format!(
        "ALTER TABLE {} ALTER COLUMN {c} TYPE {target} USING {using}",
        table.sql
    ))
    .await
    .map_err(db)?;
    Ok((Some(target), warning))
}

/// The type to give: `target` when it is the recorded original type and every value fits it,
/// else the policy's type with a warning (see [`restore`]).
async fn fitting(
    tx: &mut tokio_postgres::Transaction<'_>,
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
    let what = format!("checking {}'s values against {target}", column.name);
    // A name that does not parse as one existing type is never put into SQL; a check that
    // fails (a value that does not fit a domain's CHECK) is rolled back alone.
    let check = tx
        .savepoint("pgseal_fitting")
        .await
        .map_err(|e| MigrateError::db(&what, &e))?;
    let exists = check
        .query_one("SELECT to_regtype($1) IS NOT NULL", &[&target])
        .await
        .map(|row| row.get::<_, bool>(0));
    let exists = match exists {
        Ok(exists) => exists,
        Err(_) => {
            check
                .rollback()
                .await
                .map_err(|e| MigrateError::db(&what, &e))?;
            return fallback(format!("its original type {target} cannot be read"));
        }
    };
    if !exists {
        check
            .rollback()
            .await
            .map_err(|e| MigrateError::db(&what, &e))?;
        return fallback(format!("its original type {target} no longer exists"));
    }
    // Equal in the policy's type: `12.50` in numeric(10,2) is the `12.5` written as numeric.
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {c} IS NOT NULL \
         AND ({c}::{target})::{declared} IS DISTINCT FROM {c}::{declared}",
        table.sql,
        c = column.ident
    );
    let outcome = check.query_one(&sql, &[]).await;
    match outcome {
        Ok(row) => {
            check
                .commit()
                .await
                .map_err(|e| MigrateError::db(&what, &e))?;
            match row.get::<_, i64>(0) {
                0 => Ok((target, None)),
                changed => fallback(format!(
                    "{changed} value(s) would change in its original type {target} (cut or \
                     rounded)"
                )),
            }
        }
        Err(e) => {
            check
                .rollback()
                .await
                .map_err(|e| MigrateError::db(&what, &e))?;
            match e.code().map(|c| c.code().to_string()) {
                // Data exceptions and integrity violations (a domain's CHECK): values that do
                // not fit. The server's message may quote a value, so only the SQLSTATE is told.
                Some(code) if code.starts_with("22") || code.starts_with("23") => fallback(
                    format!("some values do not fit its original type {target} (SQLSTATE {code})"),
                ),
                _ => Err(MigrateError::db(&what, &e)),
            }
        }
    }
}
