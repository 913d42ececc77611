//! One pass over a table: keyset pagination on the primary key, one transaction per batch.
//!
//! A batch locks its rows (`FOR NO KEY UPDATE`, which lets foreign keys to them be checked),
//! reads the sealed columns as text, rewrites the values that need it, saves the position in
//! `pgseal.migration` and commits: the application waits at most one batch for a row, a value
//! it writes meanwhile (through pgseal, so sealed) is either seen by the batch or written after
//! it, and a kill loses at most the batch in flight. Deadlocks and lock timeouts run the batch
//! again.

use std::time::Duration;

use tokio_postgres::types::ToSql;

use super::plan::{ColumnPlan, TablePlan, Work};
use super::{MigrateError, Observer, Operation, Options, Report, progress, values};

/// How many times a batch is tried again after a deadlock or a lock timeout.
const MAX_RETRIES: u32 = 20;

/// The statements of one pass.
struct Statements {
    first: String,
    after: String,
    update: String,
}

fn statements(table: &TablePlan, columns: &[&ColumnPlan]) -> Statements {
    let key = &table.key;
    // Qualified and aliased: `ORDER BY id` would sort by an output column `id::text` named `id`.
    let selected: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{}::text AS c{i}", c.ident))
        .collect();
    let select = format!(
        "SELECT t.{key}::text AS k, {} FROM {} AS t",
        selected.join(", "),
        table.sql
    );
    let tail = format!("ORDER BY t.{key} LIMIT $1 FOR NO KEY UPDATE");
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = if c.storage == crate::protect::column::Storage::Bytea {
                format!("decode(substr(v.c{i}, 3), 'hex')")
            } else {
                let ty = if c.type_change.is_some() {
                    "text"
                } else {
                    c.storage_type.as_str()
                };
                format!("v.c{i}::{ty}")
            };
            format!("{} = COALESCE({value}, t.{})", c.ident, c.ident)
        })
        .collect();
    let arrays: Vec<String> = (0..=columns.len())
        .map(|i| format!("${}::text[]", i + 1))
        .collect();
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    Statements {
        first: format!("{select} {tail}"),
        after: format!(
            "{select} WHERE t.{key} > $2::text::{} {tail}",
            table.key_type
        ),
        update: format!(
            "UPDATE {} AS t SET {} FROM unnest({}) AS v(k, {}) WHERE t.{key} = v.k::{}",
            table.sql,
            sets.join(", "),
            arrays.join(", "),
            aliases.join(", "),
            table.key_type
        ),
    }
}

/// Rewrites `columns` of `table` for `operation`, from the row after `start` to the end, and
/// marks them done.
#[allow(clippy::too_many_arguments)]
pub async fn run_pass(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
    start: Option<String>,
    operation: Operation,
    options: &Options,
    observer: &mut dyn Observer,
    report: &mut Report,
) -> Result<(), MigrateError> {
    let names = progress::names(columns);
    for column in columns {
        if let Work::Run {
            from_version,
            key_version,
            ..
        } = column.work
        {
            progress::begin(
                &*client,
                table,
                column,
                operation,
                from_version,
                key_version,
                start.as_deref(),
            )
            .await?;
        }
    }
    let counted = match &start {
        None => {
            let sql = format!("SELECT count(*) FROM {}", table.sql);
            client.query_one(&sql, &[]).await
        }
        Some(after) => {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} > $1::text::{}",
                table.sql, table.key, table.key_type
            );
            client.query_one(&sql, &[after]).await
        }
    };
    let remaining: i64 = counted
        .map_err(|e| MigrateError::db(format!("counting the rows of {}", table.qualified), &e))?
        .get(0);
    observer.table(&table.qualified, u64::try_from(remaining).unwrap_or(0));

    let sql = statements(table, columns);
    let mut last = start;
    let started = std::time::Instant::now();
    loop {
        let mut attempt = 0;
        let outcome = loop {
            match batch(
                client,
                table,
                columns,
                &sql,
                last.as_deref(),
                &names,
                operation,
                options,
            )
            .await
            {
                Ok(outcome) => break outcome,
                Err(e) if e.is_transient() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    report.retries += 1;
                    crate::timer::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        };
        let Some(done) = outcome else { break };
        report.batches += 1;
        report.rows_scanned += done.rows;
        report.values_changed += done.changed;
        observer.advance(done.rows);
        last = Some(done.last_key);
    }
    report.batch_time += started.elapsed();
    progress::finish(&*client, table, &names).await
}

/// Before anything changes: the first stored value of every column to rewrite goes through
/// the transformation, so a wrong keyring (or a retired version) stops the migration here,
/// with every constraint, type and position as it was. Tokens opened with the wrong key give
/// other tokens rather than an error: an envelope column of the same keyring catches it.
pub async fn preflight(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    operation: Operation,
) -> Result<(), MigrateError> {
    for column in &table.columns {
        let Work::Run { after, .. } = &column.work else {
            continue;
        };
        let mut sql = format!(
            "SELECT t.{key}::text AS k, t.{c}::text AS v FROM {} AS t WHERE t.{c} IS NOT NULL",
            table.sql,
            key = table.key,
            c = column.ident
        );
        let rows = match after {
            None => {
                sql.push_str(&format!(" ORDER BY t.{} LIMIT 1", table.key));
                client.query(&sql, &[]).await
            }
            Some(after) => {
                sql.push_str(&format!(
                    " AND t.{key} > $1::text::{} ORDER BY t.{key} LIMIT 1",
                    table.key_type,
                    key = table.key
                ));
                client.query(&sql, &[after]).await
            }
        }
        .map_err(|e| MigrateError::db(format!("reading a value of {}", column.name), &e))?;
        for row in rows {
            let key: String = row.get(0);
            let stored: String = row.get(1);
            values::transform(operation, column, &stored).map_err(|source| {
                MigrateError::Value {
                    table: table.qualified.clone(),
                    key_column: table.key_name.clone(),
                    key,
                    problem: Box::new(source),
                }
            })?;
        }
    }
    Ok(())
}

/// Rows read at a time by [`check_all`].
const CHECK_CHUNK: i32 = 10_000;

/// How much of a column [`check_all`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every value (a column whose type is about to change, or a token column).
    Every,
    /// Only the envelopes already there, which must be this column's (another column of the
    /// same table changes type: a foreign envelope found later would stop the run after it).
    Envelopes,
}

/// Before a column's type changes or unique indexes are set aside for its tokens: stored
/// values of `columns` go through the transformation (read only, in one snapshot), so a value
/// that cannot be (a date BC, `infinity`, a malformed NIR, an envelope of another key domain)
/// stops the migration with the table as it was, rather than half-way through with a type
/// changed or an index set aside. The values are read in the text form the type change uses.
pub async fn check_all(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    columns: &[(&ColumnPlan, Check)],
    operation: Operation,
) -> Result<(), MigrateError> {
    if columns.is_empty() {
        return Ok(());
    }
    let db = |e: &tokio_postgres::Error| {
        MigrateError::db(format!("checking the values of {}", table.qualified), e)
    };
    let selected: Vec<String> = columns
        .iter()
        .map(|(c, _)| format!("t.{}::text", c.ident))
        .collect();
    let sql = format!(
        "SELECT t.{key}::text, {} FROM {} AS t ORDER BY t.{key}",
        selected.join(", "),
        table.sql,
        key = table.key
    );
    let tx = client.transaction().await.map_err(|e| db(&e))?;
    let portal = tx.bind(&sql, &[]).await.map_err(|e| db(&e))?;
    let mut first: Option<(String, crate::protect::column::ProtectError)> = None;
    let mut count = 0u64;
    loop {
        let rows = tx
            .query_portal(&portal, CHECK_CHUNK)
            .await
            .map_err(|e| db(&e))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            for (i, (column, check)) in columns.iter().enumerate() {
                let Some(stored) = row.get::<_, Option<&str>>(i + 1) else {
                    continue;
                };
                if *check == Check::Envelopes
                    && !column.crypto.is_sealed_stored(
                        stored.as_bytes(),
                        crate::protect::values::Format::Text,
                        column.storage,
                    )
                {
                    continue;
                }
                if let Err(source) = values::transform(operation, column, stored) {
                    count += 1;
                    if first.is_none() {
                        first = Some((row.get(0), source));
                    }
                }
            }
        }
    }
    tx.commit().await.map_err(|e| db(&e))?;
    match first {
        None => Ok(()),
        Some((key, source)) => Err(MigrateError::Unsealable {
            table: table.qualified.clone(),
            key_column: table.key_name.clone(),
            key,
            count,
            problem: Box::new(source),
        }),
    }
}

/// What one committed batch did.
struct Batch {
    rows: u64,
    changed: u64,
    last_key: String,
}

#[allow(clippy::too_many_arguments)]
async fn batch(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
    sql: &Statements,
    after: Option<&str>,
    names: &[String],
    operation: Operation,
    options: &Options,
) -> Result<Option<Batch>, MigrateError> {
    let db = |what: &str, e: &tokio_postgres::Error| {
        MigrateError::db(format!("{what} {}", table.qualified), e)
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| db("starting a batch on", &e))?;
    let limit = i64::try_from(options.batch_size).unwrap_or(i64::MAX);
    let rows = match after {
        None => tx.query(&sql.first, &[&limit]).await,
        Some(after) => tx.query(&sql.after, &[&limit, &after]).await,
    }
    .map_err(|e| db("reading a batch of", &e))?;
    let Some(last) = rows.last() else {
        tx.commit()
            .await
            .map_err(|e| db("ending a pass over", &e))?;
        return Ok(None);
    };
    let last_key: String = last.get(0);
    let mut keys: Vec<String> = Vec::new();
    let mut new_values: Vec<Vec<Option<String>>> = vec![Vec::new(); columns.len()];
    let mut changed = 0u64;
    for row in &rows {
        let key: String = row.get(0);
        let mut changes: Vec<Option<String>> = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let stored: Option<&str> = row.get(i + 1);
            let change = match stored {
                None => None,
                Some(stored) => values::transform(operation, column, stored).map_err(|source| {
                    MigrateError::Value {
                        table: table.qualified.clone(),
                        key_column: table.key_name.clone(),
                        key: key.clone(),
                        problem: Box::new(source),
                    }
                })?,
            };
            changes.push(change);
        }
        if changes.iter().any(Option::is_some) {
            changed += changes.iter().filter(|c| c.is_some()).count() as u64;
            keys.push(key);
            for (values, change) in new_values.iter_mut().zip(changes) {
                values.push(change);
            }
        }
    }
    if !keys.is_empty() {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(columns.len() + 1);
        params.push(&keys);
        for values in &new_values {
            params.push(values);
        }
        tx.execute(&sql.update, &params)
            .await
            .map_err(|e| db("writing a batch of", &e))?;
    }
    progress::advance(&tx, table, names, &last_key).await?;
    tx.commit()
        .await
        .map_err(|e| db("committing a batch of", &e))?;
    Ok(Some(Batch {
        rows: rows.len() as u64,
        changed,
        last_key,
    }))
}
