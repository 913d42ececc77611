//! The audit trail (`--audit FILE`): one JSON line per statement that touches sealed data —
//! who (role, end user, client address, application_name), what (statement fingerprint without
//! literals, sealed tables and columns, the view given), how many rows, and the budget's
//! decision — HMAC-chained with a key derived from the keyring, so that `pgseal audit verify`
//! detects a line removed, reordered or edited.
//!
//! - [`AuditEvent`]: the event the session builds; [`Fingerprint`]: a statement's shape.
//! - [`KeyEvent`]: an operation on the keyring — a wrapped keyring unwrapped through its HSM at
//!   start, and each `pgseal keys` command given `--audit FILE` (wrap, unwrap, rewrap, rotate,
//!   retire) — naming the keyring and the HSM's labels, never key material.
//! - [`AuditLog`]: the non-blocking writer (see `writer` for what happens when it falls behind);
//!   [`AuditAppend`]: the synchronous appender the `keys` commands use.
//! - [`verify_file`]: the check behind `pgseal audit verify`.
//!
//! Line format: `{"seq":N,"type":"start"|"statement"|"keys"|"gap",…fields…,"mac":"<hex>"}`,
//! one per line. The `start` record opens each run of a writer and names the key version; `gap`
//! records count events dropped under back-pressure. One writer at a time: a writer holds an
//! exclusive lock on the file (`flock`) while it has it open, and a second one is refused rather
//! than allowed to fork the chain. With `--audit-table-url`, the same lines also
//! go to `pgseal.audit_trail` in PostgreSQL ([`AuditTable`]).
//!
//! What the chain does not show: lines cut from the *end* of the file (the chain is intact up
//! to its new last line). Compare the last `seq` that `verify` prints with the
//! `pgseal_audit_last_seq` metric, or ship the file to append-only storage.

mod chain;
mod event;
mod fingerprint;
mod table;
mod verify;
mod writer;

pub use event::{AuditBudget, AuditColumn, AuditEvent, AuditHsm, KeyEvent};
pub(crate) use fingerprint::fnv1a;
pub use fingerprint::{Fingerprint, MAX_FINGERPRINT_LEN};
pub use table::{AuditTable, AuditTableError};
pub use verify::{VerifyError, VerifyReport, verify_file, verify_lines};
pub use writer::{AuditAppend, AuditError, AuditLog, AuditStats, AuditTarget, DEFAULT_QUEUE};
