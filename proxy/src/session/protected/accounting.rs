//! What a protected session counts and records: each statement's export-budget account, the
//! rows it charges against it, and the audit event written when it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgseal_policies::{ClassId, ColumnId};

use super::state::Refusal;
use crate::admin::Counter;
use crate::audit::{AuditBudget, AuditColumn, AuditEvent, Fingerprint};
use crate::budget::{Account, Decision, Tally};
use crate::protect::Protection;

/// Who the session is, for audit events.
#[derive(Debug)]
pub struct SessionInfo {
    /// The role it authenticated as.
    pub role: String,
    /// Its database.
    pub database: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's `application_name`.
    pub application_name: Option<String>,
}

/// What the audit trail and budgets need to know of a statement text, computed once per
/// Query or Parse.
#[derive(Clone, Debug)]
pub struct StatementInfo {
    /// Whether it touches a sealed table (its rows count against the budget's sealed rows).
    pub sealed: bool,
    /// The statement without its literal values.
    pub fingerprint: Fingerprint,
    /// Sealed tables it touches, `schema.table`.
    pub tables: Vec<String>,
    /// Sealed columns it reads (with the role's view) and writes.
    pub columns: Vec<AuditColumn>,
    /// The end user a sqlcommenter comment in the text declares.
    pub end_user: Option<String>,
}

impl StatementInfo {
    /// The statement's record, from its analysis.
    pub fn new(
        protection: &Protection,
        class: ClassId,
        sql: &str,
        tables: Vec<String>,
        reads: &[ColumnId],
        writes: &[ColumnId],
        end_user: Option<String>,
    ) -> Self {
        let policy = &protection.policy;
        let mut columns: Vec<AuditColumn> = reads
            .iter()
            .map(|id| AuditColumn {
                column: policy.column(*id).qualified_name(),
                view: policy.view(class, *id).name().to_string(),
            })
            .collect();
        columns.extend(writes.iter().map(|id| AuditColumn {
            column: policy.column(*id).qualified_name(),
            view: "write".to_string(),
        }));
        StatementInfo {
            sealed: !tables.is_empty() || !columns.is_empty(),
            fingerprint: Fingerprint::of(sql),
            tables,
            columns,
            end_user,
        }
    }
}

/// One execution of a statement: the account its rows are charged to.
pub struct Counting {
    /// The statement.
    pub statement: Arc<StatementInfo>,
    /// The end user it ran for.
    pub end_user: Option<String>,
    /// When it was sent.
    pub started: Instant,
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("end_user", &self.end_user)
            .finish_non_exhaustive()
    }
}

/// What the budget says of the next row.
pub enum Charge {
    /// Send it.
    Go,
    /// Hold it (and stop reading from PostgreSQL) for this long, then ask again.
    Hold(Duration),
    /// Refuse it and every row after it: end the statement with this error.
    Block(Refusal),
}

/// The running account of the statement whose rows are arriving.
#[derive(Default)]
pub struct Ledger {
    counting: Option<Arc<Counting>>,
    /// The account rows are charged to, resolved when the statement's response began (with
    /// the end user the server had confirmed by then).
    account: Option<(Account, Option<String>)>,
    tally: Tally,
    rows: u64,
    /// Rows read from PostgreSQL for a statement pgseal evaluates itself.
    scanned: Option<u64>,
    holding_since: Option<Instant>,
    /// The role's row counter of each view its rows were sent in (a handful: a list).
    views: Vec<(&'static str, Counter)>,
}

impl Ledger {
    /// Starts counting for a statement (no-op when it is already the one counted), charging
    /// `account` for the end user `end_user`.
    pub fn start(&mut self, counting: &Arc<Counting>, account: Account, end_user: Option<String>) {
        if self
            .counting
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, counting))
        {
            return;
        }
        self.counting = Some(Arc::clone(counting));
        self.account = Some((account, end_user));
        self.tally = Tally::default();
        self.rows = 0;
        self.scanned = None;
        self.holding_since = None;
    }

    /// Records the rows pgseal read from PostgreSQL to evaluate the statement itself.
    pub fn note_scanned(&mut self, rows: u64) {
        self.scanned = Some(rows);
    }

    /// Whether a statement is being counted.
    pub fn active(&self) -> bool {
        self.counting.is_some()
    }

    /// Charges one row.
    pub fn charge(&mut self, protection: &Protection, role: &str) -> Charge {
        let (Some(counting), Some((account, _))) = (&self.counting, &self.account) else {
            return Charge::Go;
        };
        let decision = if counting.statement.sealed {
            account.take(1)
        } else {
            account.take_unsealed(1)
        };
        match decision {
            Decision::Allow | Decision::Alert(_) => {
                if let Decision::Alert(exceeded) = decision {
                    self.tally.alert.get_or_insert(exceeded);
                }
                self.tally.rows_allowed += 1;
                self.rows += 1;
                if let Some(since) = self.holding_since.take() {
                    let waited = since.elapsed();
                    self.tally.rows_throttled += 1;
                    self.tally.waited += waited;
                    protection.metrics.rows_throttled.with(&[role]).inc();
                    protection.metrics.budget_wait.observe(waited);
                }
                Charge::Go
            }
            Decision::Wait(delay) => {
                self.holding_since.get_or_insert_with(Instant::now);
                Charge::Hold(delay)
            }
            Decision::Block(reason) => {
                protection
                    .metrics
                    .budget_blocks
                    .with(&[role, reason.limit.name()])
                    .inc();
                let refusal = Refusal {
                    sqlstate: reason.sqlstate(),
                    message: reason.message(),
                    hint: reason.hint(),
                };
                self.tally.blocked = Some(reason);
                Charge::Block(refusal)
            }
        }
    }

    /// Counts a sent row against the role's row metrics, once per view it holds.
    pub fn count_views(&mut self, protection: &Protection, role: &str, views: &[&'static str]) {
        for view in views {
            match self.views.iter().find(|(name, _)| name == view) {
                Some((_, counter)) => counter.inc(),
                None => {
                    let counter = protection.metrics.rows.with(&[role, view]);
                    counter.inc();
                    self.views.push((view, counter));
                }
            }
        }
    }

    /// Ends the statement: records its duration and, when it touched sealed data, its audit
    /// event. `sqlstate` is the error it ended with, if any.
    pub fn finish(
        &mut self,
        protection: &Protection,
        session: &SessionInfo,
        sqlstate: Option<&str>,
    ) {
        let Some(counting) = self.counting.take() else {
            return;
        };
        protection
            .metrics
            .statement_duration
            .observe(counting.started.elapsed());
        let end_user = self.account.take().and_then(|(_, end_user)| end_user);
        if counting.statement.sealed {
            let budget = AuditBudget::from(&self.tally);
            record(
                protection,
                session,
                &counting.statement,
                end_user,
                (self.rows, self.scanned.take()),
                budget,
                sqlstate,
            );
        }
        self.tally = Tally::default();
        self.rows = 0;
        self.scanned = None;
        self.holding_since = None;
    }
}

/// Writes one audit event for a statement run for `end_user`, when an audit trail is
/// configured.
pub fn record(
    protection: &Protection,
    session: &SessionInfo,
    statement: &StatementInfo,
    end_user: Option<String>,
    (rows, rows_scanned): (u64, Option<u64>),
    budget: AuditBudget,
    sqlstate: Option<&str>,
) {
    let Some(audit) = &protection.audit else {
        return;
    };
    audit.record(AuditEvent {
        time: AuditEvent::now(),
        role: session.role.clone(),
        end_user,
        client: Some(session.client.to_string()),
        application_name: session.application_name.clone(),
        database: Some(session.database.clone()),
        fingerprint: statement.fingerprint.text.clone(),
        fingerprint_id: statement.fingerprint.id.clone(),
        tables: statement.tables.clone(),
        columns: statement.columns.clone(),
        rows,
        rows_scanned,
        budget,
        sqlstate: sqlstate.map(str::to_string),
    });
}
