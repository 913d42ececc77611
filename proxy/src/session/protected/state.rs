//! What the two directions of a protected session share: prepared statements, portals, and
//! the queue of responses the server owes, in order, so that the server → client side knows
//! which statement each RowDescription, DataRow or error belongs to.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use pgseal_policies::{ColumnId, View};

use super::accounting::{Counting, StatementInfo};
use super::cursors::{CursorOp, Cursors, Declaring, Fetching};
use super::txevents::TxEvent;
use crate::analyze::CopyPlan;
use crate::analyze::evaluation::Evaluation;
use crate::protect::catalog::{DatabaseCatalog, SealedField};
use crate::protect::date_settings::DateSettings;

/// Prepared statements or portals by name, hashed with a fast keyed hasher (a Bind looks up
/// one and inserts the other).
pub type NameMap<V> = HashMap<Vec<u8>, V, foldhash::fast::RandomState>;

/// The portals pgseal knows of, by name. The unnamed portal, which most drivers bind for
/// every statement they run, is kept apart: binding it neither copies its name nor hashes it.
#[derive(Default)]
pub struct Portals {
    unnamed: Option<Arc<Portal>>,
    named: NameMap<Arc<Portal>>,
}

impl Portals {
    /// The portal called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Portal>> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    /// Whether a portal called `name` is known.
    pub fn contains_key(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// Records the portal a Bind creates (replacing one of the same name). The unnamed
    /// portal's allocation is reused when nothing else holds the one it replaces, as is usual
    /// when a driver binds it for every statement.
    pub fn bind(&mut self, name: &[u8], portal: Portal) {
        match &mut self.unnamed {
            Some(unnamed) if name.is_empty() => match Arc::get_mut(unnamed) {
                Some(reused) => *reused = portal,
                None => *unnamed = Arc::new(portal),
            },
            _ => self.insert(name, Arc::new(portal)),
        }
    }

    /// Records a portal (replacing one of the same name).
    fn insert(&mut self, name: &[u8], portal: Arc<Portal>) {
        if name.is_empty() {
            self.unnamed = Some(portal);
        } else {
            self.named.insert(name.to_vec(), portal);
        }
    }

    /// Forgets the portal called `name`.
    pub fn remove(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }

    /// Keeps only the portals whose name `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        if !keep(b"") {
            self.unnamed = None;
        }
        self.named.retain(|name, _| keep(name));
    }
}

/// How one `$n` parameter is sealed at Bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSeal {
    /// The column whose keys seal it.
    pub column: ColumnId,
    /// Whether it is stored (one sealed form) or compared (every stored form must match).
    pub compare: bool,
    /// Whether the server expects an array of every readable version's form (`= ANY($n)`).
    pub array: bool,
    /// Whether the client binds an array whose every element is stored (`UNNEST($n::date[])`).
    pub each: bool,
}

/// What to do with one result column.
#[derive(Clone, Copy, Debug)]
pub enum FieldPlan {
    /// Not sealed, or seen as ciphertext: the value goes as stored.
    Pass,
    /// Sealed and seen through a view that needs the plaintext.
    Open {
        /// The column and its storage.
        sealed: SealedField,
        /// The view to render.
        view: View,
    },
}

/// A result's columns, as learned from a RowDescription.
#[derive(Clone, Debug)]
pub struct Shape {
    /// One plan per column.
    pub fields: Vec<FieldPlan>,
    /// Whether a column comes from a sealed table's sealed column (its rows count against the
    /// export budget, whatever the statement text said).
    pub sealed: bool,
    /// The views the role gets of its sealed columns, for metrics.
    pub views: Vec<&'static str>,
    /// Set when a column is denied to the role: the result is refused with this error (the
    /// analysis should have refused the statement already; this is the backstop).
    pub denied: Option<Refusal>,
    /// Each column's origin as the RowDescription gave it (table OID, attribute number): what
    /// the plans are made again from under reloaded policies.
    pub origins: Vec<(u32, i16)>,
    /// The generation of the policies the plans were made under.
    pub generation: u64,
    /// The result formats its description gave, for a portal pgseal described itself (an SQL
    /// cursor run by Execute has no Bind saying them); `None` otherwise.
    pub formats: Option<Vec<i16>>,
}

impl Shape {
    /// Whether any column needs work (otherwise DataRows pass untouched).
    pub fn needs_work(&self) -> bool {
        self.denied.is_some()
            || self
                .fields
                .iter()
                .any(|f| matches!(f, FieldPlan::Open { .. }))
    }
}

/// A prepared statement, as pgseal planned it.
#[derive(Debug, Default)]
pub struct Prepared {
    /// How each parameter is sealed (`params[0]` is `$1`); `None` passes as sent.
    pub params: Vec<Option<ParamSeal>>,
    /// The parameter types the client gave in Parse (`0` or missing: unspecified).
    pub client_types: Vec<u32>,
    /// The result shape, once a Describe of the statement has shown it.
    pub shape: Mutex<Option<Arc<Shape>>>,
    /// The COPY it runs, when it is one.
    pub copy: Option<Arc<CopyPlan>>,
    /// What budgets and the audit trail need of it (`None` for a statement pgseal never
    /// planned).
    pub info: Option<Arc<StatementInfo>>,
    /// Its effect on end-user and transaction state.
    pub events: Vec<TxEvent>,
    /// Whether it only reads (see `Planned::read_only`).
    pub read_only: bool,
    /// Whether it runs a `COPY … FROM STDIN` (see `Planned::copies_in`).
    pub copies_in: bool,
    /// What pgseal evaluates itself in it (filters and sorts on sealed columns).
    pub evaluation: Option<Arc<Evaluation>>,
    /// Search-index probes: pgseal's own parameters, after the client's.
    pub probes: Arc<[crate::evaluate::candidates::BoundProbe]>,
    /// Whether it may change `DateStyle` or `TimeZone` (each Bind of it counts as a change).
    pub changes_dates: bool,
    /// The settings its literals were read in, at Parse (as PostgreSQL reads them).
    pub dates: Arc<DateSettings>,
    /// The generation of the policies it was planned under, and what it was planned from and
    /// into: after a reload, a Bind re-plans it and goes on only if the server's statement is
    /// what the new policies would have sent.
    pub origin: PreparedOrigin,
    /// For a `DECLARE … CURSOR`: the cursor and what pgseal evaluates in its query.
    pub declares: Option<Arc<Declaring>>,
    /// For a `FETCH` of a cursor pgseal evaluates (sent as `FETCH ALL FROM` it).
    pub fetches: Option<Arc<Fetching>>,
    /// For a `FETCH` or `MOVE`: the cursor it reads (its Execute checks the cursor is still
    /// the one it was planned for).
    pub reads_cursor: Option<String>,
    /// [`Prepared::is_plain`], worked out once when it is planned: its Execute and the end of
    /// its result then take a short path.
    pub runs_plain: bool,
}

impl Prepared {
    /// Whether running it needs nothing of pgseal but its result's shape: a read that names
    /// nothing sealed, seals no parameter, is neither evaluated by pgseal nor a COPY, reads or
    /// declares no cursor, and changes neither the end user nor the date settings. Most of
    /// an application's statements are so; a budget that counts every row still counts
    /// theirs (the short paths check).
    pub fn is_plain(&self) -> bool {
        self.read_only
            && self.info.as_ref().is_some_and(|info| !info.sealed)
            && self.params.iter().all(Option::is_none)
            && self.probes.is_empty()
            && self.evaluation.is_none()
            && self.copy.is_none()
            && !self.copies_in
            && self.declares.is_none()
            && self.fetches.is_none()
            && self.reads_cursor.is_none()
            && self.events.iter().all(|event| *event == TxEvent::None)
            && !self.changes_dates
    }
}

/// What a prepared statement was planned from (the client's Parse) and into (the server's).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PreparedOrigin {
    /// The generation of the policies in force then.
    pub generation: u64,
    /// The client's text (its literals may be patient values: wiped when dropped).
    pub client_sql: Arc<zeroize::Zeroizing<Vec<u8>>>,
    /// The parameter types the client declared.
    pub client_types: Vec<u32>,
    /// The text the server got, when pgseal rewrote it.
    pub server_sql: Option<String>,
    /// That text with its literals sealed for storage replaced by their numbers (see
    /// `Planned::comparable_sql`).
    pub comparable_sql: Option<String>,
    /// Those literals, as the server got them.
    pub stored_literals: Vec<super::plan::StoredLiteral>,
    /// The parameter types the server got.
    pub server_types: Vec<u32>,
}

impl PreparedOrigin {
    /// The text two plannings of the statement must share.
    pub fn comparable(&self) -> Option<&str> {
        self.comparable_sql
            .as_deref()
            .or(self.server_sql.as_deref())
    }
}

/// A bound portal.
#[derive(Debug)]
pub struct Portal {
    /// Its statement.
    pub statement: Arc<Prepared>,
    /// The result formats the client asked for at Bind (for its own columns).
    pub result_formats: crate::wire::extended::Formats,
    /// The settings its parameters were read in, at Bind (as PostgreSQL reads them).
    pub dates: Arc<DateSettings>,
    /// For a statement pgseal evaluates: the bound parameters it reads, as text (`$1` first,
    /// `None` for NULL or a parameter pgseal does not read).
    pub evaluation_params: Vec<Option<String>>,
    /// The result shape, once a Describe of the portal has shown it.
    pub shape: Mutex<Option<Arc<Shape>>>,
    /// For a statement pgseal evaluates, executed a few rows at a time: the rows not sent yet
    /// (`None` until its first Execute has ended; the server's portal is then exhausted).
    pub leftover: Mutex<Option<std::collections::VecDeque<zeroize::Zeroizing<Vec<u8>>>>>,
    /// [`Shared::runs_sent`] when it was bound: an Execute after anything else ran may find
    /// another portal under its name (see [`Portal::may_have_changed`]).
    pub bound_at: u64,
}

impl Portal {
    /// The shape of this portal's rows: its own Describe's, else its statement's.
    pub fn shape(&self) -> Option<Arc<Shape>> {
        let own = self.shape.lock().clone();
        own.or_else(|| self.statement.shape.lock().clone())
    }

    /// Whether the server's portal of this name may not be this one any more, now that
    /// `runs_sent` messages have been sent: something ran, or a Sync passed, since its Bind.
    /// A transaction's end destroys it, a Close too, and an SQL cursor (`DECLARE`, or a
    /// function opening one) may then take its name; or its Bind failed, and the name was
    /// and is another portal's. Either way its rows are not this statement's.
    pub fn may_have_changed(&self, runs_sent: u64) -> bool {
        self.bound_at != runs_sent
    }

    /// Whether [`Portal::shape`] is known (without taking a count of it).
    pub fn has_shape(&self) -> bool {
        self.shape_with(|shape| shape.is_some())
    }

    /// What `read` says of [`Portal::shape`], lent rather than counted.
    pub fn shape_with<R>(&self, read: impl FnOnce(Option<&Shape>) -> R) -> R {
        let own = self.shape.lock();
        match own.as_deref() {
            Some(shape) => read(Some(shape)),
            None => read(self.statement.shape.lock().as_deref()),
        }
    }
}

/// An error pgseal reports in place of the one the server gives for a refused message.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// SQLSTATE.
    pub sqlstate: &'static str,
    /// Message.
    pub message: String,
    /// Hint (how to get past it), when there is one.
    pub hint: Option<String>,
}

impl Refusal {
    /// A refusal with a SQLSTATE and a message, without a hint.
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            sqlstate,
            message: message.into(),
            hint: None,
        }
    }

    /// A short word for metrics and logs saying why, from the SQLSTATE.
    pub fn reason(&self) -> &'static str {
        match self.sqlstate {
            "42501" => "permission",
            "0A000" => "unsupported",
            "26000" => "no_plan",
            "55000" => "migrating",
            code if code.starts_with("22") => "invalid_value",
            _ => "other",
        }
    }
}

/// A response the server owes.
#[derive(Debug)]
pub enum Expect {
    /// ParseComplete: the statement becomes the server's (and pgseal's) under its name.
    Parse {
        /// The statement's name.
        name: Vec<u8>,
        /// Its plan.
        prepared: Arc<Prepared>,
    },
    /// BindComplete.
    Bind,
    /// CloseComplete: the statement or portal is gone.
    Close {
        /// `S` or `P`.
        kind: u8,
        /// Its name.
        name: Vec<u8>,
    },
    /// ParameterDescription, then RowDescription or NoData.
    DescribeStatement(Arc<Prepared>),
    /// RowDescription or NoData.
    DescribePortal(Arc<Portal>),
    /// RowDescription or NoData answering pgseal's own Describe of a portal the client runs
    /// without having described it: it gives the portal's shape (so its rows get the role's
    /// views, not the stored values) and is not the client's.
    ShapePortal(Arc<Portal>),
    /// DataRows, then CommandComplete, EmptyQueryResponse or PortalSuspended (or COPY).
    Execute {
        /// The portal run.
        portal: Arc<Portal>,
        /// The account its rows are charged to, when they count.
        count: Option<Arc<Counting>>,
        /// The extended-protocol group it belongs to (see [`Shared::groups_sent`]).
        group: u64,
        /// The client's row limit (0: all rows), for a portal pgseal evaluates: the server is
        /// asked for every row, and pgseal suspends the portal itself.
        row_limit: u32,
        /// What it does to the session's evaluated cursors.
        cursor: Option<CursorOp>,
        /// pgseal reads it in pages ([`super::paging`]), holding the client's Execute.
        paged: bool,
    },
    /// ReadyForQuery.
    Sync,
    /// The results of a simple Query, up to ReadyForQuery.
    Query {
        /// The COPY the query runs on a sealed table, if it does.
        copy: Option<Arc<CopyPlan>>,
        /// The account its rows are charged to, when they count.
        count: Option<Arc<Counting>>,
        /// Each statement's effect on end-user and transaction state, applied as the server
        /// completes them.
        events: std::collections::VecDeque<TxEvent>,
        /// Set when pgseal refused the text and sent one that fails at once instead: the
        /// server's error is replaced by this one. Like any simple Query, the server skips it
        /// (and answers nothing) when it arrives while an extended-protocol group has failed.
        /// Boxed: rare, and an `Expect` small enough to move without a call to `memcpy` is
        /// moved several times per statement.
        refused: Option<Box<Refusal>>,
        /// What pgseal evaluates itself in it.
        evaluation: Option<Arc<Evaluation>>,
        /// The settings its literals were read in.
        dates: Arc<DateSettings>,
        /// What it does to the session's evaluated cursors.
        cursor: Option<CursorOp>,
    },
    /// The server's error for a poisoned extended-protocol message (Parse, Bind, Execute), to
    /// be replaced by pgseal's.
    Refused(Refusal),
    /// The results of pgseal's own catalog query, up to ReadyForQuery, not for the client.
    CatalogLoad {
        /// The generation this load will have.
        generation: u64,
        /// The protection it is for: its policy builds the catalog, its cache keeps it.
        protection: Arc<crate::protect::Protection>,
    },
}

/// The state both directions of one session share.
pub struct Shared {
    /// Prepared statements by name, as the server confirmed them (ParseComplete).
    pub statements: NameMap<Arc<Prepared>>,
    /// Statements parsed but not confirmed yet: what a Bind in the same pipeline uses. Dropped
    /// when the server rejects or skips the Parse, so pgseal's view never runs ahead of the
    /// server's.
    pub pending_statements: NameMap<Arc<Prepared>>,
    /// Portals by name.
    pub portals: Portals,
    /// Responses the server owes, oldest first.
    pub expected: VecDeque<Expect>,
    /// The catalog this session uses.
    pub catalog: Arc<DatabaseCatalog>,
    /// Whether the catalog must be reloaded at the next idle moment.
    pub catalog_stale: bool,
    /// pgseal's last catalog query failed: a statement waiting for a first catalog is refused
    /// (the next one tries again).
    pub catalog_load_failed: bool,
    /// The server failed an extended-protocol message and skips everything up to the client's
    /// next Sync: until pgseal forwards that Sync, what the client sends is dropped (the server
    /// would ignore it), and pgseal sends nothing of its own.
    pub server_skipping: bool,
    /// The settings that decide how the server lexes SQL, as it last reported them.
    pub lexing: crate::session::auth::LexingSettings,
    /// The session's `DateStyle` and `TimeZone`, as the server last reported them.
    pub dates: Arc<DateSettings>,
    /// A statement that may change `DateStyle` or `TimeZone` was sent and the server has not
    /// been idle since: until it is (and has reported the outcome), values whose meaning
    /// depends on them are refused rather than guessed.
    pub dates_changing: bool,
    /// The end user the application declared (SET / SET LOCAL pgseal.end_user), as the server
    /// confirmed it.
    pub end_users: crate::enduser::EndUserState,
    /// The same, assuming every statement sent succeeds: what the frontend checks
    /// `require_end_user` against before sending (the backend checks again with the confirmed
    /// state when rows come).
    pub end_users_sent: crate::enduser::EndUserState,
    /// The Executes, simple Queries, Closes, fast-path calls and Syncs forwarded so far: a
    /// portal executed after any of them since its Bind is described again by pgseal, so
    /// that its rows get the server's shape of them ([`Portal::may_have_changed`]). A Sync
    /// counts because the Bind before it may have failed: the name may still be another
    /// portal's, an SQL cursor's declared `WITH HOLD` before it.
    pub runs_sent: u64,
    /// The Syncs and simple Queries forwarded so far: numbers the extended-protocol group
    /// (the messages up to a Sync) each message belongs to.
    pub groups_sent: u64,
    /// A counted Execute whose result has not ended yet: the rest of its group waits for it.
    pub gate: Option<Gate>,
    /// The group in which pgseal ended an Execute itself (an export-budget block, a value that
    /// does not open): the client was told it failed, so the rest of the group is dropped and
    /// the server is made to fail it too.
    pub failed_group: Option<u64>,
    /// A cancel pgseal sent for a statement it ended, until the server has it: nothing more
    /// is sent meanwhile (it would cancel the next statement instead).
    pub cancel_in_flight: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Wakes the frontend's held message when the gate opens or a cancel has arrived.
    pub wake_frontend: Arc<tokio::sync::Notify>,
    /// The transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    pub transaction: u8,
    /// The client has sent extended-protocol messages since its last Sync: pgseal sends
    /// nothing of its own (a catalog query would end the group's implicit transaction) and
    /// does not move the session to reloaded policies meanwhile.
    pub group_open: bool,
    /// The protection the session runs under and its generation: the frontend moves both to
    /// a reloaded set between transactions, and the backend follows before the next response.
    pub protection: (u64, Arc<crate::protect::Protection>),
    /// The SQL cursors pgseal evaluates, with the rows it keeps for their FETCHes.
    pub cursors: Cursors,
    /// A simple Query pgseal reads in pages through its own cursor, while its steps run.
    pub paging: Option<super::paging::Paging>,
}

/// A counted Execute the rest of its group waits for. pgseal may end it mid-result (an
/// export-budget block) and tell the client it failed; the server, which knows nothing of
/// that, would run the messages after it and commit them. So a later Execute of the group is
/// held until the result ends, and so is its Sync when the statement writes (the server
/// would commit the write at Sync): pgseal can then make the server fail the group as well.
#[derive(Clone, Copy, Debug)]
pub struct Gate {
    /// The group of the Execute.
    pub group: u64,
    /// Whether its Sync waits too.
    pub holds_sync: bool,
    /// Whether pgseal asked the server to flush its output (it sends an Execute's result
    /// only at Sync or Flush, and the Sync may be the message held).
    pub flushed: bool,
}

impl Shared {
    /// The DateStyle and TimeZone a value the client sends now is read in: the ones last
    /// reported, or unknown (what depends on them refused) while a change may be under way.
    pub fn input_dates(&self) -> Arc<DateSettings> {
        static UNKNOWN: std::sync::LazyLock<Arc<DateSettings>> =
            std::sync::LazyLock::new(|| Arc::new(DateSettings::unknown()));
        if self.dates_changing {
            Arc::clone(&UNKNOWN)
        } else {
            Arc::clone(&self.dates)
        }
    }

    /// The statement a Bind or Describe names: the pending one, else the confirmed one.
    pub fn statement(&self, name: &[u8]) -> Option<Arc<Prepared>> {
        self.pending_statements
            .get(name)
            .or_else(|| self.statements.get(name))
            .cloned()
    }

    /// Applies a response the server sent (ParseComplete, CloseComplete) to the maps.
    pub fn confirm(&mut self, expect: Expect) {
        match expect {
            Expect::Parse { name, prepared } => {
                if self
                    .pending_statements
                    .get(&name)
                    .is_some_and(|p| Arc::ptr_eq(p, &prepared))
                {
                    self.pending_statements.remove(&name);
                }
                self.statements.insert(name, prepared);
            }
            Expect::Close { kind: b'S', name } => {
                self.statements.remove(&name);
            }
            Expect::Close { name, .. } => {
                self.portals.remove(&name);
            }
            _ => {}
        }
    }

    /// Forgets what a message the server rejected or skipped would have done.
    pub fn discard(&mut self, expect: &Expect) {
        self.open_gate(expect);
        if let Expect::Execute { paged: true, .. } = expect {
            // The server skipped it: the client's held Execute is done with.
            self.end_paging();
        }
        if let Expect::Query {
            cursor: Some(CursorOp::Declare { name, id }),
            ..
        }
        | Expect::Execute {
            cursor: Some(CursorOp::Declare { name, id }),
            ..
        } = expect
        {
            self.cursors.reject(name, *id);
        }
        if let Expect::Parse { name, prepared } = expect
            && self
                .pending_statements
                .get(name)
                .is_some_and(|p| Arc::ptr_eq(p, prepared))
        {
            self.pending_statements.remove(name);
        }
    }
}

impl Shared {
    /// Whether a cancel pgseal sent has not reached the server yet (forgotten once it has).
    pub fn cancel_pending(&mut self) -> bool {
        match &self.cancel_in_flight {
            Some(done) if !done.load(std::sync::atomic::Ordering::Acquire) => true,
            _ => {
                self.cancel_in_flight = None;
                false
            }
        }
    }

    /// Ends a paged read: the frontend lets the client's held message go.
    pub fn end_paging(&mut self) {
        if let Some(paging) = self.paging.as_mut() {
            paging.next = super::paging::Next::End;
        }
        self.wake_frontend.notify_one();
    }

    /// Opens the gate when `expect` is the counted Execute it waits for, now ended (or
    /// skipped by the server).
    pub fn open_gate(&mut self, expect: &Expect) {
        if let Expect::Execute {
            count: Some(_),
            group,
            ..
        } = expect
            && self.gate.is_some_and(|gate| gate.group == *group)
        {
            self.gate = None;
            self.wake_frontend.notify_one();
        }
    }
}

/// The lock around [`Shared`]: both pumps of a session run in one task, so it is never
/// contended.
pub type SharedState = Arc<Mutex<Shared>>;

/// Locks the shared state. `parking_lot`'s lock has no poisoning to recover from (a pump
/// that panics ends the session's task) and takes and releases with one atomic each, which
/// matters at a few dozen locks per statement.
pub fn lock(state: &SharedState) -> parking_lot::MutexGuard<'_, Shared> {
    state.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Expect` is moved several times per statement (queued, taken, confirmed): it is kept
    /// small enough that a move is a few register copies rather than a call to `memcpy`.
    #[test]
    fn an_expected_response_stays_small_enough_to_move_inline() {
        let size = std::mem::size_of::<Expect>();
        assert!(size <= 128, "Expect is {size} bytes");
    }
}
