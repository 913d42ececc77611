//! [`AuditTable`]: a copy of the audit trail in a PostgreSQL table (`--audit-table-url`), for
//! hosting providers who collect audit data in a database rather than in files.
//!
//! The table holds the trail's lines exactly as the file does (`line` is the chained, HMAC-sealed
//! JSON text, byte for byte), one row per line keyed by the pgseal instance (host and listen
//! address), the run (a random id per start of pgseal: a run that starts a new chain numbers
//! its lines from 1 again) and the line's sequence number; lines exported with `SELECT line …
//! WHERE instance = '…' ORDER BY stored_at, seq` verify with `pgseal audit verify` like the
//! file. The connection does not use TLS (like `--state-url`): point it at a local socket or a
//! trusted network. The file stays
//! the trail of record: lines go to the table in the background, in batches, after they are in
//! the file. When the database is slow or down, lines wait in a bounded queue and the writer
//! retries; lines that overflow the queue are counted ([`super::AuditStats::table_dropped`])
//! and logged, never waited for — sessions do not stop because an audit database did.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls};

use super::writer::AuditStats;

/// Lines that may wait for the table.
const TABLE_QUEUE: usize = 65_536;
/// Lines per INSERT.
const BATCH: usize = 500;
/// The longest wait between two attempts when the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE TABLE IF NOT EXISTS pgseal.audit_trail (
    instance text NOT NULL,
    run text NOT NULL,
    seq bigint NOT NULL,
    line text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, run, seq)
)";

/// How long one INSERT may take before the connection is given up and opened again (a
/// half-open connection would otherwise stall the copy for hours).
const INSERT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the audit table could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditTableError {
    /// The URL does not parse.
    #[error("--audit-table-url: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or the table created.
    #[error("audit table: {0}")]
    Database(String),
}

/// A connected audit table, ready to take lines (see [`AuditTable::sink`]).
pub struct AuditTable {
    config: tokio_postgres::Config,
    client: Client,
    instance: String,
    run: String,
}

impl AuditTable {
    /// Connects and creates `pgseal.audit_trail` when missing, so a wrong URL fails at startup.
    /// `instance` tells the lines of this pgseal apart from other instances' (each has its own
    /// chain).
    pub async fn connect(url: &str, instance: &str) -> Result<AuditTable, AuditTableError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| AuditTableError::InvalidUrl(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("pgseal audit");
        }
        let client = open(&config)
            .await
            .map_err(|e| AuditTableError::Database(crate::pgerror::describe(&e)))?;
        Ok(AuditTable {
            config,
            client,
            instance: instance.to_owned(),
            run: format!("{:032x}", rand::random::<u128>()),
        })
    }

    /// Starts the background writer; lines handed to the sink go to the table in order. The
    /// receiver resolves once the sink is dropped and every queued line is in the table (or
    /// given up on).
    pub(crate) fn sink(self, stats: Arc<AuditStats>) -> (TableSink, oneshot::Receiver<()>) {
        let (lines, receiver) = mpsc::channel(TABLE_QUEUE);
        let (done, finished) = oneshot::channel();
        tokio::spawn(async move {
            self.run(receiver, stats).await;
            let _ = done.send(());
        });
        (TableSink { lines }, finished)
    }

    async fn run(mut self, mut receiver: mpsc::Receiver<(u64, String)>, stats: Arc<AuditStats>) {
        let mut batch: Vec<(u64, String)> = Vec::with_capacity(BATCH);
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u64;
        loop {
            if batch.is_empty() {
                match receiver.recv().await {
                    Some(line) => batch.push(line),
                    None => return,
                }
            }
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(line) => batch.push(line),
                    Err(_) => break,
                }
            }
            let inserted = crate::timer::timeout(INSERT_TIMEOUT, self.insert(&batch))
                .await
                .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            match inserted {
                Ok(()) => {
                    stats
                        .table_written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    backoff = Duration::from_millis(100);
                    failures = 0;
                }
                Err(error) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(
                            "audit table write failed ({failures} so far, retrying): {error}"
                        );
                    }
                    if receiver.is_closed() && receiver.is_empty() && failures > 10 {
                        // Shutting down and the database stays away: the file has every line.
                        stats
                            .table_dropped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        return;
                    }
                    crate::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // A new connection each time: the old one may be closed or half-open.
                    if let Ok(Ok(client)) =
                        crate::timer::timeout(INSERT_TIMEOUT, open(&self.config)).await
                    {
                        self.client = client;
                    }
                }
            }
        }
    }

    /// Inserts a batch; lines already there (a retry after a lost answer) are skipped.
    async fn insert(&self, batch: &[(u64, String)]) -> Result<(), String> {
        let seqs: Vec<i64> = batch
            .iter()
            .map(|(seq, _)| i64::try_from(*seq).unwrap_or(i64::MAX))
            .collect();
        let lines: Vec<&str> = batch.iter().map(|(_, line)| line.as_str()).collect();
        self.client
            .execute(
                "INSERT INTO pgseal.audit_trail (instance, run, seq, line) \
                 SELECT $1, $2, s, l FROM unnest($3::bigint[], $4::text[]) AS t(s, l) \
                 ON CONFLICT (instance, run, seq) DO NOTHING",
                &[&self.instance, &self.run, &seqs, &lines],
            )
            .await
            .map(|_| ())
            .map_err(|e| crate::pgerror::describe(&e))
    }
}

async fn open(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!("audit table connection: {error}");
        }
    });
    client.batch_execute(SCHEMA).await?;
    Ok(client)
}

/// The writer thread's end of the table's queue.
pub(crate) struct TableSink {
    lines: mpsc::Sender<(u64, String)>,
}

impl TableSink {
    /// Queues a line (its sequence number and text, without the newline). Never waits.
    pub(crate) fn push(&self, seq: u64, line: &str, stats: &AuditStats) {
        if self.lines.try_send((seq, line.to_owned())).is_err() {
            let dropped = stats.table_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(
                    "audit table queue full: {dropped} line(s) not copied to the table so far \
                     (they are in the file)"
                );
            }
        }
    }
}
