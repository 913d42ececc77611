//! `pgseal migrate`: protecting a database that already holds plaintext, rotating its keys, and
//! leaving pgseal, in place and online.
//!
//! The migrator connects straight to PostgreSQL (as a role that owns the sealed tables) and
//! works table by table: it changes the storage type where the mode needs it (`types.rs`), then
//! rewrites values in batches — keyset pagination on the primary key, one transaction per batch
//! holding row locks only on that batch (`batch.rs`) — with the position of every column saved
//! in `pgseal.migration` in the same transaction (`progress.rs`), so it can be killed at any
//! point and run again. What each value becomes is decided in `values.rs`, with the proxy's own
//! canonical forms and keys (`protect::column::ColumnCrypto`), so a value sealed here reads back
//! and matches lookups exactly as one written through pgseal. Fully sealed envelope columns get
//! a CHECK constraint (`constraints.rs`) so a write that bypasses pgseal cannot store plaintext.
//! `plan.rs` reads the catalog and decides what each column needs; [`run`] puts it together.

pub mod batch;
pub mod constraints;
pub mod key_guard;
pub mod plan;
pub mod progress;
pub mod search;
pub mod types;
pub mod unique_indexes;
pub mod values;

use std::time::{Duration, Instant};

use pgseal_keys::Keyring;
use pgseal_policies::CompiledPolicy;
use thiserror::Error;

pub use plan::{ColumnPlan, MigrationPlan, TablePlan, Work};

/// What a migration does to the sealed columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Plaintext → sealed (the storage type becomes text where the mode needs it).
    Encrypt,
    /// Sealed under older key versions → sealed under the active version.
    Rotate,
    /// Sealed → plaintext, with the declared types restored (leaving pgseal).
    Decrypt,
}

impl Operation {
    /// The name used on the command line and in `pgseal.migration`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Encrypt => "encrypt",
            Operation::Rotate => "rotate",
            Operation::Decrypt => "decrypt",
        }
    }

    /// Parses a name stored in `pgseal.migration`.
    pub fn parse(name: &str) -> Option<Operation> {
        [Operation::Encrypt, Operation::Rotate, Operation::Decrypt]
            .into_iter()
            .find(|op| op.name() == name)
    }
}

/// Why a migration stopped. Never carries a value of a sealed column.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// A statement failed.
    #[error("{what}: {message}")]
    Database {
        /// What the migrator was doing.
        what: String,
        /// The server's (or the driver's) message.
        message: String,
        /// The SQLSTATE, when the server sent one.
        code: Option<String>,
    },
    /// Another `pgseal migrate` holds the database's migration lock.
    #[error(
        "another pgseal migrate is running on this database (it holds the migration's advisory \
         lock); wait for it to finish"
    )]
    Busy,
    /// A sealed table the policy names does not exist.
    #[error("table {table} does not exist in the database")]
    MissingTable {
        /// `schema.table`.
        table: String,
    },
    /// A sealed column the policy names does not exist.
    #[error("sealed column {column} does not exist in the database")]
    MissingColumn {
        /// `schema.table.column`.
        column: String,
    },
    /// A sealed table without a primary key cannot be paginated safely.
    #[error(
        "table {table} has no primary key: pgseal migrate walks tables by primary key (add one, \
         e.g. ALTER TABLE {table} ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"
    )]
    NoPrimaryKey {
        /// `schema.table`.
        table: String,
    },
    /// A table with inheritance children or partitions: its rows are not all in one table.
    #[error(
        "table {table} has inheritance children or partitions: pgseal migrate does not \
         migrate those yet (migrate each child as its own table, or detach them first)"
    )]
    HasChildren {
        /// `schema.table`.
        table: String,
    },
    /// A primary key of several columns.
    #[error(
        "table {table} has a primary key of {count} columns: pgseal migrate needs a \
         single-column primary key (or a single-column UNIQUE NOT NULL key made primary)"
    )]
    CompositeKey {
        /// `schema.table`.
        table: String,
        /// How many columns.
        count: usize,
    },
    /// A column the migration changes is not marked `migrating = true` in the policy, so a
    /// running pgseal would misread it while it changes.
    #[error(
        "{column} is not marked `migrating = true` in the policy: mark it (and restart pgseal \
         with that policy) before `pgseal migrate {operation}`, so that pgseal reads it \
         correctly while it holds both forms; remove the mark once the migration is done"
    )]
    NotMarked {
        /// The column.
        column: String,
        /// The operation.
        operation: &'static str,
    },
    /// A column's progress says another operation is half done.
    #[error(
        "{column}: a `pgseal migrate {unfinished}` is unfinished ({last}); run it again to \
         finish it first"
    )]
    Unfinished {
        /// The column.
        column: String,
        /// The unfinished operation.
        unfinished: &'static str,
        /// Where it stopped (`stopped after key 1234`, `no batch committed`).
        last: String,
    },
    /// The policy gives a column another mode or key domain than its migration recorded.
    #[error(
        "{column}: pgseal migrate {operation} recorded it as {recorded}, but the policy now says \
         {now}; its stored values are under the recorded mode and keys, so nothing is done: put \
         the policy back as it was (to change a column's mode or key domain, finish any \
         unfinished operation and run `pgseal migrate decrypt` with the old policy, then \
         encrypt with the new one; pseudonyms cannot be opened, so theirs cannot change)"
    )]
    PolicyChanged {
        /// The column.
        column: String,
        /// The operation that recorded it.
        operation: &'static str,
        /// Mode and domain as recorded.
        recorded: String,
        /// Mode and domain as the policy says now.
        now: String,
    },
    /// A column PostgreSQL fills itself (DEFAULT, identity, generated): its values would be
    /// stored in plaintext, bypassing pgseal.
    #[error(
        "{column} has {filler}: PostgreSQL would write those values itself, in plaintext, into \
         a sealed column; remove it first (ALTER TABLE … ALTER COLUMN … DROP DEFAULT, DROP \
         IDENTITY or DROP EXPRESSION) and let the application write the value through pgseal"
    )]
    FilledByServer {
        /// The column.
        column: String,
        /// What fills it.
        filler: String,
    },
    /// A sealed column is its table's primary key.
    #[error(
        "{column} is its table's primary key: pgseal migrate walks tables by primary key and \
         cannot rewrite it (nor could foreign keys follow); seal another column, or give the \
         table a surrogate key (e.g. ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY) and \
         make it primary"
    )]
    SealedKey {
        /// The column.
        column: String,
    },
    /// A unique index over a tokenized column that cannot be set aside while tokens change.
    #[error(
        "{table}: the index {index} covers a tokenized column and cannot be set aside while its \
         tokens are rewritten (a new token may equal a value not rewritten yet): {why}"
    )]
    UniqueUnsafe {
        /// `schema.table`.
        table: String,
        /// The index.
        index: String,
        /// Why, and what to do.
        why: &'static str,
    },
    /// Unique indexes set aside on a table this run does not migrate.
    #[error(
        "pgseal.migration_index holds unique indexes of {table} ({indexes}) set aside by an \
         unfinished migration, and this policy does not name that table (or it was renamed): run \
         pgseal migrate with the policy that names it, which builds them again, or build them \
         yourself from the index_sql, constraint_sql and after_sql of their rows and delete the \
         rows"
    )]
    StrandedIndexes {
        /// `schema.table` as recorded.
        table: String,
        /// The indexes.
        indexes: String,
    },
    /// A set-aside unique index cannot be built again: duplicates were written meanwhile.
    #[error(
        "{table}: the unique index {index}, set aside while tokens were rewritten, cannot be \
         built again: the column holds duplicates, written bypassing pgseal meanwhile (find them \
         with SELECT the indexed columns, count(*) … GROUP BY … HAVING count(*) > 1); resolve \
         them and run pgseal migrate again"
    )]
    UniqueDuplicates {
        /// `schema.table`.
        table: String,
        /// The index.
        index: String,
    },
    /// The progress store records a tokenized column that no longer exists.
    #[error(
        "pgseal.migration records {record} of {column}, which is no longer in the database; its \
         values cannot be told from plaintext, so under a new name they would be tokenized \
         again: if it was renamed, name it back until the migration is over; if it was \
         dropped, delete the record ({delete})"
    )]
    Orphan {
        /// `schema.table.column` as recorded.
        column: String,
        /// `an unfinished encrypt`, `a finished rotate`…
        record: String,
        /// The statement that deletes the record.
        delete: String,
    },
    /// `rotate` of a column that is not sealed.
    #[error("{column} is not sealed ({why}): run `pgseal migrate encrypt` first")]
    NotSealed {
        /// The column.
        column: String,
        /// Why the migrator thinks so.
        why: String,
    },
    /// A value could not be transformed: it does not fit the declared type, does not open
    /// (another keyring, a retired key version, tampering), or is not a valid token input.
    #[error("{table} row {key_column} = {key}: {problem}")]
    Value {
        /// `schema.table`.
        table: String,
        /// The primary key column.
        key_column: String,
        /// The row's primary key (not patient data: the value itself is never shown).
        key: String,
        /// What went wrong.
        problem: Box<crate::protect::column::ProtectError>,
    },
    /// Values that cannot be sealed, found before any change.
    #[error(
        "{table}: {count} value(s) cannot be sealed, the first at row {key_column} = {key}: \
         {problem}; nothing was changed (correct or clear those values, then run again)"
    )]
    Unsealable {
        /// `schema.table`.
        table: String,
        /// The primary key column.
        key_column: String,
        /// The first failing row's primary key.
        key: String,
        /// How many values fail.
        count: u64,
        /// Why the first one fails.
        problem: Box<crate::protect::column::ProtectError>,
    },
    /// A column's keys could not be derived.
    #[error("keys for {column}: {problem}")]
    Keys {
        /// The column.
        column: String,
        /// Why.
        problem: pgseal_keys::Error,
    },
    /// Values in the old form keep appearing behind the migrator: plaintext written bypassing
    /// pgseal during `encrypt`, envelopes written through pgseal during `decrypt`.
    #[error(
        "{column} still holds {count} {form} value(s) after {passes} passes: something keeps \
         writing them (during encrypt: writes that bypass pgseal; during decrypt: writes through \
         pgseal, which seals them); stop those writes and run again"
    )]
    WrittenBehind {
        /// The column.
        column: String,
        /// How many values.
        count: i64,
        /// How many passes were made.
        passes: u32,
        /// `plaintext` or `sealed`.
        form: &'static str,
    },
}

impl MigrateError {
    /// A database error while doing `what`.
    pub fn db(what: impl Into<String>, err: &tokio_postgres::Error) -> MigrateError {
        MigrateError::Database {
            what: what.into(),
            message: crate::pgerror::describe(err),
            code: err.code().map(|c| c.code().to_string()),
        }
    }

    /// Whether running the same batch again may succeed (deadlock, serialization failure, lock
    /// timeout, a query canceled by the server).
    pub fn is_transient(&self) -> bool {
        matches!(self, MigrateError::Database { code: Some(code), .. }
            if matches!(code.as_str(), "40P01" | "40001" | "55P03" | "57014"))
    }
}

/// How a migration runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rows per batch (one transaction each).
    pub batch_size: usize,
    /// Print the plan and change nothing.
    pub dry_run: bool,
    /// How long a DDL statement or a batch may wait for a lock before it is retried.
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: DEFAULT_BATCH_SIZE,
            dry_run: false,
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// Rows per batch unless told otherwise: about 10 ms of work per transaction.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// What a migration reports while it runs.
pub trait Observer {
    /// A table's rewriting starts: `rows` rows to look at.
    fn table(&mut self, table: &str, rows: u64);
    /// `rows` more rows looked at.
    fn advance(&mut self, rows: u64);
    /// A step worth telling (a type changed, a constraint added…).
    fn note(&mut self, text: &str);
    /// Something the operator must see even in a quiet run (a type not given back as it was).
    fn warn(&mut self, text: &str);
}

/// An observer that ignores everything (for tests and quiet runs).
pub struct Silent;

impl Observer for Silent {
    fn table(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn note(&mut self, _: &str) {}
    fn warn(&mut self, _: &str) {}
}

/// What a migration did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Rows looked at.
    pub rows_scanned: u64,
    /// Values rewritten (sealed, re-sealed or opened).
    pub values_changed: u64,
    /// Batches committed.
    pub batches: u64,
    /// Batches run again after a deadlock or a lock timeout.
    pub retries: u64,
    /// Time spent in batches (the rest: type changes, counts, constraints).
    pub batch_time: Duration,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Rows looked at per second of batches alone.
    pub fn batch_rows_per_second(&self) -> f64 {
        let secs = self.batch_time.as_secs_f64();
        if secs > 0.0 {
            self.rows_scanned as f64 / secs
        } else {
            0.0
        }
    }

    /// Rows looked at per second.
    pub fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows_scanned as f64 / secs
        } else {
            0.0
        }
    }
}

/// Settings of the migrator's session: the text forms its `::text` casts and type changes
/// produce must be the canonical forms pgseal seals (ISO dates, UTC instants, hex bytea); it
/// must not wait forever behind the application's locks; string literals are standard (a
/// backslash is not an escape, whatever the database's default) and only `pg_catalog` is on
/// the search path, so every name the migrator reads from the catalog comes back qualified and
/// no function or type of another schema can stand in for a built-in one.
fn session_settings(options: &Options) -> String {
    format!(
        "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lock_timeout = {}; \
         SET statement_timeout = 0; SET standard_conforming_strings = on; \
         SET search_path = pg_catalog, pg_temp",
        options.lock_timeout.as_millis().max(1)
    )
}

/// The advisory lock that keeps two migrators off one database (an arbitrary constant: "pgseal"
/// in ASCII). Released when the session ends, however it ends.
const LOCK_KEY: i64 = 0x7067_7365_616c;

/// Runs `operation` for every sealed column of `policy` on the database `client` is connected
/// to (straight to PostgreSQL, not through pgseal). With `options.dry_run`, returns the plan and
/// changes nothing.
pub async fn run(
    client: &mut tokio_postgres::Client,
    policy: &CompiledPolicy,
    keyring: &Keyring,
    operation: Operation,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<(MigrationPlan, Report), MigrateError> {
    let started = Instant::now();
    if options.dry_run {
        set_session(client, options).await?;
    } else {
        start_session(client, options).await?;
    }
    let plan = plan::plan(client, policy, keyring, operation).await?;
    if options.dry_run {
        return Ok((plan, Report::default()));
    }
    for table in &plan.tables {
        check_before_changes(client, table, operation).await?;
    }
    progress::install(client).await?;
    let mut report = Report::default();
    match operation {
        // Decrypt counts the envelopes left behind with it (a database sealed through pgseal
        // from the start may not have it yet).
        Operation::Encrypt | Operation::Decrypt => constraints::install_functions(client).await?,
        Operation::Rotate => {}
    }
    for table in &plan.tables {
        run_table(client, table, operation, options, observer, &mut report).await?;
    }
    end_session(client).await?;
    report.elapsed = started.elapsed();
    Ok((plan, report))
}

/// The migrator's session settings ([`session_settings`]).
async fn set_session(
    client: &tokio_postgres::Client,
    options: &Options,
) -> Result<(), MigrateError> {
    client
        .batch_execute(&session_settings(options))
        .await
        .map_err(|e| MigrateError::db("setting up the session", &e))
}

/// Sets the session up and takes the database's migration lock ([`MigrateError::Busy`] when
/// another migrator holds it).
pub(crate) async fn start_session(
    client: &tokio_postgres::Client,
    options: &Options,
) -> Result<(), MigrateError> {
    set_session(client, options).await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| MigrateError::db("taking the migration lock", &e))?
        .get(0);
    if !locked {
        return Err(MigrateError::Busy);
    }
    Ok(())
}

/// Releases the migration lock.
pub(crate) async fn end_session(client: &tokio_postgres::Client) -> Result<(), MigrateError> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| MigrateError::db("releasing the migration lock", &e))?;
    Ok(())
}

/// What is checked on a table before the migration changes anything: the first value of each
/// column (a wrong keyring), the unique indexes tokens would need set aside, and, when a type
/// changes or indexes are set aside, every value that could stop the run half-way.
async fn check_before_changes(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    operation: Operation,
) -> Result<(), MigrateError> {
    batch::preflight(client, table, operation).await?;
    unique_indexes::check(client, table, &token_passes(table)).await?;
    // When a type changes or unique indexes are set aside for tokens, a value that cannot
    // be transformed must stop the run before that, not half-way: the changing columns and
    // the token columns are checked whole; during encrypt, the table's other envelope
    // columns are checked for foreign envelopes.
    let running = |c: &&ColumnPlan| matches!(c.work, Work::Run { .. });
    if table
        .columns
        .iter()
        .filter(running)
        .any(|c| c.type_change.is_some() || !c.crypto.has_marker())
    {
        let checks: Vec<(&ColumnPlan, batch::Check)> = table
            .columns
            .iter()
            .filter(running)
            .filter_map(|c| match (&c.type_change, c.crypto.has_marker()) {
                (None, true) if operation == Operation::Encrypt => {
                    Some((c, batch::Check::Envelopes))
                }
                (None, true) => None,
                _ => Some((c, batch::Check::Every)),
            })
            .collect();
        batch::check_all(client, table, &checks, operation).await?;
    }
    Ok(())
}

/// How many passes over a column are made when plaintext keeps appearing behind the migrator.
const MAX_PASSES: u32 = 3;

async fn run_table(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    operation: Operation,
    options: &Options,
    observer: &mut dyn Observer,
    report: &mut Report,
) -> Result<(), MigrateError> {
    if operation == Operation::Decrypt {
        // The constraints would refuse the plaintext about to be written.
        for column in &table.columns {
            if constraints::drop(client, table, column).await? {
                observer.note(&format!("{}: CHECK constraint dropped", column.name));
            }
        }
    }
    if operation != Operation::Encrypt {
        // Search tokens are made under the keyring's oldest readable version: once `keys
        // retire` moves it, pgseal writes other tokens, which the index's CHECK would refuse.
        for column in &table.columns {
            if search::set_aside(client, table, column, operation == Operation::Decrypt).await? {
                observer.note(&format!(
                    "{}: search index set aside (pgseal scans until `pgseal migrate index` \
                     builds it again)",
                    column.name
                ));
            }
        }
    }
    if operation == Operation::Encrypt {
        for column in &table.columns {
            if let Some(target) = &column.type_change {
                // The type it had is recorded before it changes: a kill right after the change
                // must not leave `decrypt` without it.
                if let Work::Run {
                    after,
                    from_version,
                    key_version,
                } = &column.work
                {
                    progress::begin(
                        &*client,
                        table,
                        column,
                        operation,
                        *from_version,
                        *key_version,
                        after.as_deref(),
                    )
                    .await?;
                }
                types::change(client, table, column, target, options).await?;
                observer.note(&format!(
                    "{}: storage type {} → {}",
                    column.name, column.storage_type, target
                ));
            }
        }
    }
    let mut passes = 0;
    let mut pending: Vec<(&ColumnPlan, Option<String>)> = table
        .columns
        .iter()
        .filter_map(|c| match &c.work {
            Work::Run { after, .. } => Some((c, after.clone())),
            Work::Nothing(_) => None,
        })
        .collect();
    for column in recount_settled(client, table, operation, observer).await? {
        pending.push((column, None));
    }
    // Tokens and pseudonyms cannot be told from plaintext: their rows must not move under the
    // pass's position. They are all rewritten in the first round of passes (later rounds are
    // only for envelopes written behind), after which the guard goes.
    let mut guarded = pending.iter().any(|(c, _)| !c.crypto.has_marker());
    if guarded {
        key_guard::install(client, table).await?;
        observer.note(&format!(
            "{}: primary key guarded while tokens are rewritten",
            table.qualified
        ));
        for index in unique_indexes::set_aside(client, table, &token_passes(table)).await? {
            observer.note(&format!(
                "{}: unique index {index} set aside while tokens are rewritten",
                table.qualified
            ));
        }
    }
    while !pending.is_empty() {
        passes += 1;
        // Columns resumed from the same key share a pass (usually all of them: one pass).
        let mut starts: Vec<Option<String>> = pending.iter().map(|(_, a)| a.clone()).collect();
        starts.sort();
        starts.dedup();
        for start in starts {
            let group: Vec<&ColumnPlan> = pending
                .iter()
                .filter(|(_, a)| *a == start)
                .map(|(c, _)| *c)
                .collect();
            batch::run_pass(
                client, table, &group, start, operation, options, observer, report,
            )
            .await?;
        }
        if guarded {
            key_guard::remove(client, table).await?;
            restore_unique_indexes(client, table, observer).await?;
            guarded = false;
        }
        if operation == Operation::Rotate {
            break;
        }
        // Envelopes say they are sealed: a value the migrator passed and that was written again
        // meanwhile in the old form (plaintext behind pgseal's back during encrypt, an envelope
        // sealed by pgseal during decrypt) is found and rewritten by another pass before the
        // constraint goes on or the declared type comes back.
        let left_behind = operation == Operation::Decrypt;
        let mut again = Vec::new();
        let marked: Vec<&ColumnPlan> = pending
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| c.crypto.has_marker())
            .collect();
        let counts = constraints::count(client, table, &marked, left_behind).await?;
        for (column, count) in marked.into_iter().zip(counts) {
            if count == 0 {
                continue;
            }
            if passes >= MAX_PASSES {
                return Err(MigrateError::WrittenBehind {
                    column: column.name.clone(),
                    count,
                    passes,
                    form: if left_behind { "sealed" } else { "plaintext" },
                });
            }
            observer.note(&format!(
                "{}: {count} value(s) written meanwhile in the old form; another pass",
                column.name
            ));
            progress::restart(client, table, column, operation).await?;
            again.push((column, None));
        }
        pending = again;
    }
    key_guard::remove(client, table).await?;
    restore_unique_indexes(client, table, observer).await?;
    match operation {
        Operation::Encrypt => {
            for column in table.columns.iter().filter(|c| c.crypto.has_marker()) {
                if constraints::add(client, table, column).await? {
                    observer.note(&format!(
                        "{}: CHECK constraint {} added",
                        column.name,
                        constraints::name(column)
                    ));
                }
            }
        }
        Operation::Decrypt => {
            for column in &table.columns {
                let Some(target) = types::restore_target(column) else {
                    continue;
                };
                let (given, warning) = types::restore(client, table, column, target).await?;
                if let Some(warning) = warning {
                    observer.warn(&warning);
                }
                if let Some(given) = given {
                    observer.note(&format!(
                        "{}: storage type {} → {given}",
                        column.name, column.storage_type
                    ));
                }
            }
        }
        Operation::Rotate => {}
    }
    Ok(())
}

/// The tokenized and pseudonym columns of `table` this run rewrites.
fn token_passes(table: &TablePlan) -> Vec<&ColumnPlan> {
    table
        .columns
        .iter()
        .filter(|c| !c.crypto.has_marker() && matches!(c.work, Work::Run { .. }))
        .collect()
}

/// Builds again the unique indexes set aside on `table` (by this run or a killed one).
async fn restore_unique_indexes(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    observer: &mut dyn Observer,
) -> Result<(), MigrateError> {
    for index in unique_indexes::restore(client, table).await? {
        observer.note(&format!(
            "{}: unique index {index} built again",
            table.qualified
        ));
    }
    Ok(())
}

/// The envelope columns an earlier run finished that hold values in the old form again (an
/// envelope sealed by pgseal after `decrypt`, plaintext written bypassing pgseal before the
/// CHECK went on), sent back to their first row for another pass rather than trusted to their
/// record. A column whose validated CHECK already guarantees it is not counted.
async fn recount_settled<'t>(
    client: &tokio_postgres::Client,
    table: &'t TablePlan,
    operation: Operation,
    observer: &mut dyn Observer,
) -> Result<Vec<&'t ColumnPlan>, MigrateError> {
    if operation == Operation::Rotate {
        return Ok(Vec::new());
    }
    let mut settled = Vec::new();
    for column in &table.columns {
        let candidate = column.crypto.has_marker()
            && matches!(column.work, Work::Nothing(_))
            && pgseal_policies::catalog::holds_ciphertext(&column.storage_type);
        if candidate
            && !(operation == Operation::Encrypt
                && constraints::is_validated(client, table, column).await?)
        {
            settled.push(column);
        }
    }
    let counts =
        constraints::count(client, table, &settled, operation == Operation::Decrypt).await?;
    let mut again = Vec::new();
    for (column, count) in settled.into_iter().zip(counts) {
        if count == 0 {
            continue;
        }
        if !column.marked {
            return Err(MigrateError::NotMarked {
                column: column.name.clone(),
                operation: operation.name(),
            });
        }
        observer.note(&format!(
            "{}: {count} value(s) in the old form since the last run; another pass",
            column.name
        ));
        progress::restart(client, table, column, operation).await?;
        again.push(column);
    }
    Ok(again)
}

/// An identifier for SQL, always double-quoted: a bare name that is also a keyword (`order`,
/// `user`, `end`) would otherwise be read as the keyword, or as a function call.
pub(crate) fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
