//! Discovery: `pgseal policy discover` finds the columns of a plaintext database that hold
//! personal health data, and drafts a policy that seals them.
//!
//! Modules, one job each: [`sample`] (the catalog and a bounded sample of rows, in one
//! read-only transaction), [`detectors`] (what kind of data a column holds, by name and by
//! content, with [`matchers`] for the kinds beyond identity and contact details), [`links`] (which tables join, through foreign keys or `x_id` names),
//! [`copies`] (columns repeating a sensitive column's values, whole, normalised or as a part),
//! [`draft`] (the report and the draft policy), [`opening`] (sealed samples opened with a
//! keyring), [`warnings`] (what `pgseal policy check`
//! says of unsealed columns).
//!
//! What leaves this module is counts, shares and shapes: never a sampled value. The sample is
//! held in memory while it is judged and dropped afterwards.

pub mod copies;
pub mod detectors;
pub mod draft;
pub mod links;
pub mod matchers;
pub mod opening;
pub mod sample;
pub mod warnings;

use thiserror::Error;

pub use copies::CopyOf;
pub use detectors::{Evidence, Kind};
pub use sample::{ColumnSample, Keys, TableSample};

/// The default number of rows sampled per table.
pub const DEFAULT_SAMPLE_ROWS: u32 = 1000;

/// The default `statement_timeout` of discovery's transaction, in milliseconds.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// Why discovery could not run.
#[derive(Debug, Error)]
pub enum DiscoverError {
    /// The database refused or failed a statement.
    #[error("{during}: {message}")]
    Database {
        /// What discovery was doing.
        during: String,
        /// The database's error, in one line.
        message: String,
    },
}

impl DiscoverError {
    /// A database error met while doing `during`.
    pub fn db(during: impl Into<String>, error: &tokio_postgres::Error) -> DiscoverError {
        DiscoverError::Database {
            during: during.into(),
            message: crate::pgerror::describe(error),
        }
    }
}

/// One column of the database and what was found in it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The schema's name.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// The column as sampled (its values are dropped once judged).
    pub column: ColumnSample,
    /// The evidence for each kind it may hold, confident ones first.
    pub evidence: Vec<Evidence>,
    /// The sensitive columns whose values it repeats, confident ones first.
    pub copies: Vec<CopyOf>,
}

impl Finding {
    /// Whether the column should be sealed without a second look.
    pub fn confident(&self) -> bool {
        self.evidence.iter().any(|e| e.confident) || self.copies.iter().any(|c| c.confident)
    }

    /// The kind that decides the column's mode and mask: the first confident one, or else the
    /// first one found.
    pub fn main_kind(&self) -> Option<Kind> {
        self.evidence.first().map(|e| e.kind)
    }
}

/// What discovery found: the columns where something was found, and the tables it could not
/// sample.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The columns where something was found, in catalog order, their values dropped.
    pub findings: Vec<Finding>,
    /// `schema.table: why` for each table whose rows could not be read (judged by name only).
    pub unread: Vec<String>,
    /// What could not be compared as asked (a join that could not run), in words.
    pub notes: Vec<String>,
}

/// Which columns' copies discovery looks for.
#[derive(Debug, Clone)]
pub enum Sources {
    /// The columns it finds confidently holding a kind that identifies someone
    /// ([`copies::identifying`]): `pgseal policy discover`.
    Found,
    /// These `(schema, table, column)`, whatever was found in them: the sealed columns of a
    /// policy, for `pgseal policy check`. Without an opener their envelopes are left out of
    /// the comparison (only plaintext still stored, as before `pgseal migrate encrypt`, can be
    /// compared); with one, every value is opened (tokens included) and those that cannot be
    /// are left out.
    Named(
        Vec<(String, String, String)>,
        Option<std::sync::Arc<opening::KeyringOpener>>,
    ),
}

/// How discovery samples and what it compares.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows sampled per table.
    pub sample_rows: u32,
    /// The transaction's `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Whose copies are looked for.
    pub sources: Sources,
}

impl Options {
    /// Discovery's defaults: [`DEFAULT_SAMPLE_ROWS`] rows, [`DEFAULT_STATEMENT_TIMEOUT_MS`],
    /// copies of what it finds.
    pub fn new(sample_rows: u32) -> Options {
        Options {
            sample_rows,
            statement_timeout_ms: DEFAULT_STATEMENT_TIMEOUT_MS,
            sources: Sources::Found,
        }
    }
}

/// Samples the database, judges every column and looks for copies of the sources, in one
/// read-only transaction.
pub async fn discover(
    client: &mut tokio_postgres::Client,
    options: &Options,
) -> Result<Discovery, DiscoverError> {
    let mut transaction = sample::begin(client, options.statement_timeout_ms).await?;
    let mut tables = sample::sample_database(&mut transaction, options.sample_rows).await?;
    let today = today();
    let mut unread = Vec::new();
    let mut evidence: Vec<Vec<Vec<Evidence>>> = Vec::with_capacity(tables.len());
    for table in &tables {
        if let Some(why) = &table.unread {
            unread.push(format!(
                "{}: not sampled ({why}): judged by column names only",
                pgseal_policies::ident::quote_qualified(&[&table.schema, &table.table])
            ));
        }
        evidence.push(
            table
                .columns
                .iter()
                .map(|column| detectors::assess(column, &table.table, today))
                .collect(),
        );
    }
    let sources = sources(&mut tables, &evidence, &options.sources);
    let prepare = |(t, c): (usize, usize), value: String| {
        let table: &TableSample = &tables[t];
        let column = &table.columns[c];
        let name = (
            table.schema.as_str(),
            table.table.as_str(),
            column.name.as_str(),
        );
        source_value(&options.sources, name, &column.storage_type, value)
    };
    let copies = copies::find(
        &mut transaction,
        &tables,
        &sources,
        &prepare,
        options.sample_rows,
    )
    .await?;
    // Read-only: nothing to keep; the outcome of the rollback does not matter.
    let _ = transaction.rollback().await;
    let mut copies_found = copies.found;
    let mut findings = Vec::new();
    for (t, (table, evidence)) in tables.into_iter().zip(evidence).enumerate() {
        for (c, (mut column, evidence)) in table.columns.into_iter().zip(evidence).enumerate() {
            column.values = Vec::new();
            column.rows = Vec::new();
            let copies = copies_found.remove(&(t, c)).unwrap_or_default();
            if !evidence.is_empty() || !copies.is_empty() {
                findings.push(Finding {
                    schema: table.schema.clone(),
                    table: table.table.clone(),
                    column,
                    evidence,
                    copies,
                });
            }
        }
    }
    Ok(Discovery {
        findings,
        unread,
        notes: copies.notes,
    })
}

/// A source's value as compared: as read for [`Sources::Found`]; for [`Sources::Named`],
/// opened with the opener when there is one, else left out when it is an envelope.
fn source_value(
    wanted: &Sources,
    column: (&str, &str, &str),
    storage_type: &str,
    value: String,
) -> Option<String> {
    match wanted {
        Sources::Found => Some(value),
        Sources::Named(_, Some(opener)) => opener.open(column, storage_type, &value),
        Sources::Named(_, None) => (!pgseal_keys::is_sealed_text(&value)).then_some(value),
    }
}

/// The columns whose copies are looked for. Named sources keep only their plaintext values.
fn sources(
    tables: &mut [TableSample],
    evidence: &[Vec<Vec<Evidence>>],
    wanted: &Sources,
) -> Vec<copies::Source> {
    let mut out = Vec::new();
    for (t, table) in tables.iter_mut().enumerate() {
        for (c, column) in table.columns.iter_mut().enumerate() {
            let found = &evidence[t][c];
            let kind = found.first().map(|e| e.kind);
            let chosen = match wanted {
                Sources::Found => found
                    .iter()
                    .any(|e| e.confident && copies::identifying(e.kind)),
                Sources::Named(names, _) => names.iter().any(|(s, n, col)| {
                    *s == table.schema && *n == table.table && *col == column.name
                }),
            };
            if !chosen {
                continue;
            }
            if matches!(wanted, Sources::Named(..)) {
                let name = (
                    table.schema.as_str(),
                    table.table.as_str(),
                    column.name.as_str(),
                );
                let mut kept = Vec::with_capacity(column.values.len());
                for (value, row) in column.values.drain(..).zip(column.rows.drain(..)) {
                    if let Some(plaintext) = source_value(wanted, name, &column.storage_type, value)
                    {
                        kept.push((plaintext, row));
                    }
                }
                (column.values, column.rows) = kept.into_iter().unzip();
            }
            // A closed vocabulary (booleans, blood groups, sexes) repeats by chance everywhere.
            let distinct: std::collections::HashSet<&str> =
                column.values.iter().map(|v| v.trim()).collect();
            if distinct.len() < copies::MIN_SOURCE_DISTINCT {
                continue;
            }
            out.push(copies::Source { at: (t, c), kind });
        }
    }
    out
}

/// Today's date (UTC), the latest date of birth believed.
fn today() -> (i32, u8, u8) {
    let now = time::OffsetDateTime::now_utc();
    (now.year(), u8::from(now.month()), now.day())
}
