//! [`AuditLog`]: the audit trail's writer, off the data path.
//!
//! Sessions hand events to a bounded queue (`try_send`: never waits); one writer thread
//! serialises them, chains them ([`super::chain`]) and appends them to the file (or standard
//! output), flushing whenever the queue runs empty and syncing to disk at most once a second and
//! on close.
//!
//! **When the queue is full** (the disk is far behind, or stalled), the event is dropped, not
//! waited for: blocking sessions would turn a slow audit disk into an outage of patient care.
//! The loss is loud and tamper-evident rather than silent: every drop is counted
//! ([`AuditStats::dropped`], for metrics), logged (at the 1st, 2nd, 4th, 8th… drop), and the
//! writer puts a `gap` record with the number of events lost into the chain before the next
//! event, so `pgseal audit verify` reports exactly how many are missing and where.
//!
//! **Restarts** append to the same file: the writer reads the last line's `seq` and MAC and
//! continues the chain with a `start` record (`"chain":"continued"`); a new or empty file starts
//! a new chain (`"chain":"new"`). If the last line cannot be read (a torn write), a new chain
//! starts after it and `verify` names that line. The start record names the root key version
//! whose audit key seals the lines that follow it.
//!
//! **One writer per file.** The writer holds an exclusive advisory lock (`flock`) on the file
//! for as long as it has it open; a second pgseal (another `serve`, or a `keys` command given
//! the same `--audit FILE`) is refused with [`AuditError::Locked`] instead of continuing the
//! chain from a point the first one has moved past. [`AuditAppend`] is the synchronous writer
//! the `keys` commands use: it takes the lock before the operation and appends a `start`
//! record and the operation's `keys` record after it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgseal_keys::{AUDIT_MAC_LEN, AuditKey};
use tokio::sync::{mpsc, oneshot};

use super::chain::{self, GENESIS};
use super::event::{AuditEvent, KeyEvent};
use super::table::{AuditTable, TableSink};

/// Events the queue holds by default.
pub const DEFAULT_QUEUE: usize = 16_384;
/// How long closing waits for the audit table to take the trail's last lines.
pub const TABLE_CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How much of a file's end is read to find its last line.
const TAIL_READ: u64 = 1 << 20;

/// Where the audit trail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditTarget {
    /// Appended to a file (created with mode 0600).
    File(PathBuf),
    /// Written to standard output (logs go to standard error).
    Stdout,
}

impl AuditTarget {
    /// `-` is standard output; anything else a file.
    pub fn parse(value: &str) -> AuditTarget {
        if value == "-" {
            AuditTarget::Stdout
        } else {
            AuditTarget::File(PathBuf::from(value))
        }
    }
}

/// Why the audit log could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened, read or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file (`-` for standard output).
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The writer thread is gone.
    #[error("the audit writer has stopped")]
    Stopped,
    /// Another pgseal holds the file (a running `serve`, or another `keys` command).
    #[error(
        "audit log {path} is being written by another pgseal process (a running `serve`?): one \
         writer per trail, or the chain would fork; stop it, or give this command its own trail"
    )]
    Locked {
        /// The file.
        path: String,
    },
}

/// Counts of the audit log, for metrics.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Events written.
    pub written: AtomicU64,
    /// Events dropped because the queue was full (or the log closed).
    pub dropped: AtomicU64,
    /// Write errors (disk full…).
    pub write_errors: AtomicU64,
    /// The last sequence number written.
    pub last_seq: AtomicU64,
    /// Lines copied to the audit table (`--audit-table-url`).
    pub table_written: AtomicU64,
    /// Lines not copied to the audit table (its queue was full, or it stayed unreachable at
    /// shutdown); they are in the file.
    pub table_dropped: AtomicU64,
}

enum Message {
    Event(Box<AuditEvent>),
    Keys(Box<KeyEvent>),
    Flush(oneshot::Sender<io::Result<()>>),
    Close(oneshot::Sender<io::Result<()>>),
}

/// The audit trail. Cheap to clone; every clone writes to the same chain.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Message>,
    stats: Arc<AuditStats>,
    /// Events dropped since the last gap record.
    unrecorded_drops: Arc<AtomicU64>,
    /// Resolves once the audit table has every line (when there is one).
    table_finished: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
}

impl AuditLog {
    /// Opens the trail: reads the file's end to continue its chain, writes the start record
    /// (so a file that cannot be written fails here, at startup), then starts the writer thread.
    /// `queue` is the number of events that may wait ([`DEFAULT_QUEUE`]). With `table`, every
    /// line also goes to the audit table, in the background.
    pub fn open(
        target: AuditTarget,
        key: AuditKey,
        queue: usize,
        table: Option<AuditTable>,
    ) -> Result<AuditLog, AuditError> {
        let name = match &target {
            AuditTarget::File(path) => path.display().to_string(),
            AuditTarget::Stdout => "-".to_owned(),
        };
        let io_error = |source| AuditError::Io {
            path: name.clone(),
            source,
        };
        let (out, lock, tail) = match &target {
            AuditTarget::File(path) => {
                let (file, lock, tail) = open_locked(path)?;
                (Output::File(BufWriter::new(file)), Some(lock), tail)
            }
            AuditTarget::Stdout => (
                Output::Stdout(BufWriter::new(io::stdout())),
                None,
                Tail::Empty,
            ),
        };
        let stats = Arc::new(AuditStats::default());
        let unrecorded_drops = Arc::new(AtomicU64::new(0));
        let (table, table_finished) = match table {
            Some(table) => {
                let (sink, finished) = table.sink(Arc::clone(&stats));
                (Some(sink), Some(finished))
            }
            None => (None, None),
        };
        let mut writer = Writer {
            table,
            out,
            _lock: lock,
            key,
            previous: GENESIS,
            seq: 0,
            stats: stats.clone(),
            unrecorded_drops: unrecorded_drops.clone(),
            dirty_since: None,
        };
        let chain_state = writer.take_tail(tail).map_err(io_error)?;
        writer
            .append("start", &writer.start_record(chain_state))
            .and_then(|()| writer.out.flush())
            .map_err(io_error)?;
        let (sender, receiver) = mpsc::channel(queue.max(1));
        std::thread::Builder::new()
            .name("pgseal-audit".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error)?;
        Ok(AuditLog {
            queue: sender,
            stats,
            unrecorded_drops,
            table_finished: Arc::new(std::sync::Mutex::new(table_finished)),
        })
    }

    /// Queues an event. Never waits: when the queue is full the event is dropped and counted
    /// (see the module documentation).
    pub fn record(&self, event: AuditEvent) {
        if self
            .queue
            .try_send(Message::Event(Box::new(event)))
            .is_err()
        {
            self.unrecorded_drops.fetch_add(1, Ordering::Relaxed);
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(
                    "audit log queue full: {dropped} audit event(s) dropped so far (recorded as a \
                     gap in the trail)"
                );
            }
        }
    }

    /// Queues an operation on the keyring (a `keys` record). Never waits, like
    /// [`AuditLog::record`]; call it at start, when the queue is empty.
    pub fn record_keys(&self, event: KeyEvent) {
        if self.queue.try_send(Message::Keys(Box::new(event))).is_err() {
            self.unrecorded_drops.fetch_add(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "audit log queue full: a keyring event was dropped (recorded as a gap)"
            );
        }
    }

    /// The log's counts.
    pub fn stats(&self) -> &Arc<AuditStats> {
        &self.stats
    }

    /// Waits until every event queued so far is written and flushed to the file.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Message::Flush(done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        wait_io(wait).await
    }

    /// Writes what is queued, syncs the file to disk and stops the writer; events recorded
    /// afterwards are dropped (and counted). Call it at shutdown, after the sessions ended.
    /// With an audit table, also waits (up to [`TABLE_CLOSE_WAIT`]) for its last lines.
    pub async fn close(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Message::Close(done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        let written = wait_io(wait).await;
        let table = self
            .table_finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(table) = table
            && crate::timer::timeout(TABLE_CLOSE_WAIT, table)
                .await
                .is_err()
        {
            tracing::warn!(
                "the audit table did not take the trail's last lines in time (they are in the file)"
            );
        }
        written
    }
}

async fn wait_io(wait: oneshot::Receiver<io::Result<()>>) -> Result<(), AuditError> {
    match wait.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(AuditError::Io {
            path: "(audit)".into(),
            source,
        }),
        Err(_) => Err(AuditError::Stopped),
    }
}

/// The exclusive `flock` on a trail, held on a duplicate of the writer's descriptor (the lock
/// belongs to the open file, which both share); released when dropped.
type TrailLock = nix::fcntl::Flock<File>;

/// Opens the trail's file and takes its exclusive lock (refused when another process has it).
fn open_locked(path: &Path) -> Result<(File, TrailLock, Tail), AuditError> {
    let name = path.display().to_string();
    let io_error = |source| AuditError::Io {
        path: name.clone(),
        source,
    };
    let (file, tail) = open_file(path).map_err(io_error)?;
    let duplicate = file.try_clone().map_err(io_error)?;
    match nix::fcntl::Flock::lock(duplicate, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok((file, lock, tail)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(AuditError::Locked { path: name }),
        Err((_, errno)) => Err(io_error(io::Error::from(errno))),
    }
}

/// The synchronous appender of the `keys` commands: [`AuditAppend::open`] takes the file's
/// lock before the operation (so an operation is not run when its line could not be written
/// after it), [`AuditAppend::append`] writes a `start` record and the `keys` records, chained
/// to what the file holds, and syncs them to disk.
pub struct AuditAppend {
    path: PathBuf,
    file: File,
    lock: TrailLock,
    tail: Tail,
}

impl AuditAppend {
    /// Opens (creating it with mode 0600) and locks the trail at `path`.
    pub fn open(path: &Path) -> Result<AuditAppend, AuditError> {
        let (file, lock, tail) = open_locked(path)?;
        Ok(AuditAppend {
            path: path.to_path_buf(),
            file,
            lock,
            tail,
        })
    }

    /// Appends a `start` record naming `key`'s version, then one `keys` record per event,
    /// and syncs the file. Returns the sequence number of the last record written.
    pub fn append(self, key: AuditKey, events: &[KeyEvent]) -> Result<u64, AuditError> {
        let io_error = |source| AuditError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut writer = Writer {
            out: Output::File(BufWriter::new(self.file)),
            _lock: Some(self.lock),
            table: None,
            key,
            previous: GENESIS,
            seq: 0,
            stats: Arc::new(AuditStats::default()),
            unrecorded_drops: Arc::new(AtomicU64::new(0)),
            dirty_since: None,
        };
        let chain_state = writer.take_tail(self.tail).map_err(io_error)?;
        writer
            .append("start", &writer.start_record(chain_state))
            .map_err(io_error)?;
        for event in events {
            let object = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
            writer.append("keys", &object).map_err(io_error)?;
        }
        writer.out.sync().map_err(io_error)?;
        Ok(writer.seq)
    }
}

/// What the end of an existing file holds.
enum Tail {
    /// Nothing: a new chain.
    Empty,
    /// A last line that is not a record (torn write, foreign text).
    Unreadable { needs_newline: bool },
    /// The last record's sequence number and MAC: the chain continues.
    Last { seq: u64, mac: [u8; AUDIT_MAC_LEN] },
}

fn open_file(path: &Path) -> io::Result<(File, Tail)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((file, Tail::Empty));
    }
    let start = len.saturating_sub(TAIL_READ);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    Read::by_ref(&mut file)
        .take(TAIL_READ)
        .read_to_end(&mut bytes)?;
    let needs_newline = !bytes.ends_with(b"\n");
    let text = String::from_utf8_lossy(&bytes);
    let last = if needs_newline {
        None
    } else {
        text.trim_end_matches('\n').rsplit('\n').next()
    };
    let tail = last
        .and_then(|line| {
            let (body, mac) = chain::split(line)?;
            let value: serde_json::Value = serde_json::from_str(&body).ok()?;
            Some(Tail::Last {
                seq: value.get("seq")?.as_u64()?,
                mac,
            })
        })
        .unwrap_or(Tail::Unreadable { needs_newline });
    Ok((file, tail))
}

enum Output {
    File(BufWriter<File>),
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::File(w) => w.write_all(bytes),
            Output::Stdout(w) => w.write_all(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File(w) => w.flush(),
            Output::Stdout(w) => w.flush(),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match self {
            Output::File(w) => w.get_ref().sync_data(),
            Output::Stdout(_) => Ok(()),
        }
    }
}

struct Writer {
    out: Output,
    /// The trail's lock, held as long as the writer (none for standard output).
    _lock: Option<TrailLock>,
    /// The audit table's queue, when there is one (dropped with the writer: the table's task
    /// then finishes).
    table: Option<TableSink>,
    key: AuditKey,
    previous: [u8; AUDIT_MAC_LEN],
    seq: u64,
    stats: Arc<AuditStats>,
    unrecorded_drops: Arc<AtomicU64>,
    /// When unsynced data was first written.
    dirty_since: Option<Instant>,
}

impl Writer {
    /// Continues the chain the file ends with, or starts a new one; returns which.
    fn take_tail(&mut self, tail: Tail) -> io::Result<&'static str> {
        Ok(match tail {
            Tail::Empty => "new",
            Tail::Unreadable { needs_newline } => {
                if needs_newline {
                    self.out.write_all(b"\n")?;
                }
                "new"
            }
            Tail::Last { seq, mac } => {
                self.seq = seq;
                self.previous = mac;
                "continued"
            }
        })
    }

    /// The body of a `start` record.
    fn start_record(&self, chain_state: &str) -> String {
        serde_json::json!({
            "time": AuditEvent::now(),
            "key_version": self.key.version(),
            "pgseal": env!("CARGO_PKG_VERSION"),
            "chain": chain_state,
        })
        .to_string()
    }

    fn write_keys(&mut self, event: &KeyEvent) {
        let object = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
        let result = self.append("keys", &object);
        self.report(result);
    }

    fn append(&mut self, kind: &str, object: &str) -> io::Result<()> {
        let seq = self.seq + 1;
        let body = chain::body(seq, kind, object);
        let (mut line, mac) = chain::seal(&self.key, &self.previous, &body);
        line.push('\n');
        // The chain moves on even if the write fails: `verify` then names the damaged line.
        self.seq = seq;
        self.previous = mac;
        self.stats.last_seq.store(seq, Ordering::Relaxed);
        self.dirty_since.get_or_insert_with(Instant::now);
        let written = self.out.write_all(line.as_bytes());
        if let (Some(table), Ok(())) = (&self.table, &written) {
            table.push(seq, line.trim_end_matches('\n'), &self.stats);
        }
        written
    }

    fn write_event(&mut self, event: &AuditEvent) {
        let dropped = self.unrecorded_drops.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let gap = serde_json::json!({ "time": AuditEvent::now(), "dropped": dropped });
            let result = self.append("gap", &gap.to_string());
            self.report(result);
        }
        let object = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
        let result = self.append("statement", &object);
        if result.is_ok() {
            self.stats.written.fetch_add(1, Ordering::Relaxed);
        }
        self.report(result);
    }

    fn report(&self, result: io::Result<()>) {
        if let Err(err) = result {
            let errors = self.stats.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
            if errors.is_power_of_two() {
                tracing::error!("audit log write failed ({errors} so far): {err}");
            }
        }
    }

    fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        while let Some(message) = receiver.blocking_recv() {
            match message {
                Message::Event(event) => self.write_event(&event),
                Message::Keys(event) => self.write_keys(&event),
                Message::Flush(done) => {
                    let _ = done.send(self.out.flush());
                }
                Message::Close(done) => {
                    receiver.close();
                    while let Ok(message) = receiver.try_recv() {
                        match message {
                            Message::Event(event) => self.write_event(&event),
                            Message::Keys(event) => self.write_keys(&event),
                            Message::Flush(d) | Message::Close(d) => {
                                let _ = d.send(Ok(()));
                            }
                        }
                    }
                    let written = self.out.sync();
                    // The lock goes before the answer: a writer opened once `close` returns
                    // (a restart) finds the trail free.
                    self._lock = None;
                    let _ = done.send(written);
                    return;
                }
            }
            if receiver.is_empty() {
                let result = match self.dirty_since {
                    Some(since) if since.elapsed() >= Duration::from_secs(1) => {
                        self.dirty_since = None;
                        self.out.sync()
                    }
                    _ => self.out.flush(),
                };
                self.report(result);
            }
        }
        let _ = self.out.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_become_a_gap_record_before_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let keyring = pgseal_keys::KeyringFile::generate().unwrap().into_keyring();
        let (file, _) = open_file(&path).unwrap();
        let stats = Arc::new(AuditStats::default());
        let drops = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            table: None,
            _lock: None,
            out: Output::File(BufWriter::new(file)),
            key: keyring.audit_key(),
            previous: GENESIS,
            seq: 0,
            stats: stats.clone(),
            unrecorded_drops: drops.clone(),
            dirty_since: None,
        };
        writer
            .append("start", r#"{"key_version":1,"chain":"new"}"#)
            .unwrap();
        writer.write_event(&AuditEvent::default());
        drops.store(3, Ordering::Relaxed);
        writer.write_event(&AuditEvent::default());
        writer.out.sync().unwrap();
        let report = crate::audit::verify_file(&path, &keyring).unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.statements, 2);
        assert_eq!((report.gaps, report.dropped), (1, 3));
        let text = std::fs::read_to_string(&path).unwrap();
        let gap = text.lines().nth(2).unwrap();
        assert!(gap.starts_with(r#"{"seq":3,"type":"gap","#), "{gap}");
        assert_eq!(stats.written.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn one_writer_per_trail_and_keys_records_chain_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let keyring = pgseal_keys::KeyringFile::generate().unwrap().into_keyring();
        let held = AuditAppend::open(&path).unwrap();
        assert!(matches!(
            AuditAppend::open(&path),
            Err(AuditError::Locked { .. })
        ));
        assert!(matches!(
            AuditLog::open(
                AuditTarget::File(path.clone()),
                keyring.audit_key(),
                4,
                None
            ),
            Err(AuditError::Locked { .. })
        ));
        let event = KeyEvent::new("keys rotate", "rotate", None, keyring.versions(), None);
        assert_eq!(
            held.append(keyring.audit_key(), std::slice::from_ref(&event))
                .unwrap(),
            2
        );
        // The lock went with the appender: the next one continues the chain.
        let next = AuditAppend::open(&path).unwrap();
        assert_eq!(next.append(keyring.audit_key(), &[event]).unwrap(), 4);
        let report = crate::audit::verify_file(&path, &keyring).unwrap();
        assert_eq!(
            (report.records, report.starts, report.key_events),
            (4, 2, 2)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let second = text.lines().nth(1).unwrap();
        assert!(
            second.starts_with(r#"{"seq":2,"type":"keys","time":"#)
                && second.contains(r#""operation":"rotate","#)
                && second.contains(r#""versions":[1],"active_version":1,"#)
                && !second.contains("hsm"),
            "{second}"
        );
    }
}
