//! Discovery: `pgseal policy discover` finds the columns of a plaintext database that hold
//! personal health data, and drafts a policy that seals them.
//!
//! Modules, one job each: [`sample`] (the catalog and a bounded sample of rows, in one
//! read-only transaction), [`detectors`] (what kind of data a column holds, by name and by
//! content), [`draft`] (the report and the draft policy).
//!
//! What leaves this module is counts, shares and shapes: never a sampled value. The sample is
//! held in memory while it is judged and dropped afterwards.

pub mod detectors;
pub mod draft;
pub mod sample;

use thiserror::Error;

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
}

impl Finding {
    /// Whether the column should be sealed without a second look.
    pub fn confident(&self) -> bool {
        self.evidence.iter().any(|e| e.confident)
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
}

/// Samples the database and judges every column.
pub async fn discover(
    client: &mut tokio_postgres::Client,
    sample_rows: u32,
    statement_timeout_ms: u64,
) -> Result<Discovery, DiscoverError> {
    let tables = sample::sample_database(client, sample_rows, statement_timeout_ms).await?;
    let today = today();
    let mut findings = Vec::new();
    let mut unread = Vec::new();
    for table in tables {
        if let Some(why) = &table.unread {
            unread.push(format!(
                "{}: not sampled ({why}): judged by column names only",
                pgseal_policies::ident::quote_qualified(&[&table.schema, &table.table])
            ));
        }
        for mut column in table.columns {
            let evidence = detectors::assess(&column, today);
            column.values = Vec::new();
            if !evidence.is_empty() {
                findings.push(Finding {
                    schema: table.schema.clone(),
                    table: table.table.clone(),
                    column,
                    evidence,
                });
            }
        }
    }
    Ok(Discovery { findings, unread })
}

/// Today's date (UTC), the latest date of birth believed.
fn today() -> (i32, u8, u8) {
    let now = time::OffsetDateTime::now_utc();
    (now.year(), u8::from(now.month()), now.day())
}
