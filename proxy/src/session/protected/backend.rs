//! The server → client side of a protected session: each RowDescription's column origins are
//! looked up in the catalog and turned into a plan per column (pass, or open and render the
//! role's view); DataRows and COPY rows of sealed columns are opened and rendered; the types
//! the client is told are the declared plaintext types; the server's errors for refused
//! messages are replaced by pgseal's; pgseal's own catalog queries are answered here and never
//! reach the client.

use std::sync::Arc;

use bytes::BytesMut;
use pgseal_policies::{ClassId, PlainType, View};
use smallvec::SmallVec;
use tracing::warn;

use super::accounting::{Charge, Counting, Ledger, SessionInfo, StatementInfo};
use super::copy::CopyOut;
use super::cursors::{CursorOp, Fetching};
use super::evaluating::{Evaluating, Reopened};
use super::paging::{self, Next, PagedRead, Phase};
use super::plan;
use super::state::{
    Expect, FieldPlan, Portal, Prepared, Refusal, Shape, Shared, SharedState, lock,
};
use super::txevents::{self, TxEvent};
use crate::analyze::evaluation::Evaluation;
use crate::error::SessionError;
use crate::evaluate::rows::Step;
use crate::protect::Protection;
use crate::protect::catalog;
use crate::protect::date_settings::DateSettings;
use crate::protect::values::Format;
use crate::session::relay::{Filter, Flow};
use crate::wire::extended::{self, DataRowWriter, Field, RowTooLarge, format_at};
use crate::wire::messages::{Severity, error_response};

/// The result whose rows are arriving.
struct Current {
    shape: Arc<Shape>,
    /// Result format per column (from the portal's Bind, or the RowDescription).
    formats: extended::Formats,
    /// When pgseal filters or sorts the result itself.
    evaluating: Option<Box<Evaluating>>,
}

/// The server → client filter of a protected session.
pub struct Backend {
    /// The session's DateStyle and TimeZone as last reported: what sealed dates and times
    /// in text results print in.
    dates: Arc<DateSettings>,
    /// Set while handling a frame that goes on as the server sent it (`Flow::Unchanged`: the
    /// relay forwards it without a copy).
    unchanged: bool,
    /// Set when [`Backend::front_reads_rows`] said no to a DataRow: until a frame of another
    /// type, nothing it depends on changes (the rows go by unread), so the answer holds for
    /// the rest of the run of rows without a lock per row.
    front_passes_rows: bool,
    protection: Arc<Protection>,
    /// The generation of the policies `protection` comes from.
    generation: u64,
    state: SharedState,
    class: ClassId,
    database: String,
    current: Option<Current>,
    /// The last result's plan, and the catalog it was made under (see [`Backend::shape`]).
    last_shape: Option<(Arc<crate::protect::catalog::DatabaseCatalog>, Arc<Shape>)>,
    /// The RowDescription `last_shape` was planned from, as the server sent it, with its
    /// format codes, when it passes unchanged (see [`Backend::described_as_last`]).
    last_description: (Vec<u8>, extended::Formats),
    /// Rows of the result are being dropped (an error was sent in their place).
    suppressing: Option<Refusal>,
    /// Everything is dropped until ReadyForQuery (after pgseal failed an extended-protocol
    /// execution, the client expects the server to skip to Sync).
    skip_to_ready: bool,
    copy_out: Option<CopyOut>,
    catalog_rows: Vec<Vec<Option<String>>>,
    catalog_failed: bool,
    session: Arc<SessionInfo>,
    /// The export-budget account of the statement whose rows are arriving.
    ledger: Ledger,
    /// The error a simple Query ended with, for its audit event.
    query_error: Option<String>,
    /// The last transaction status (`I`, `T`, `E`).
    transaction: u8,
    /// The statements since the last ReadyForQuery: whether they began outside a transaction
    /// (an implicit one), and whether one failed.
    cycle: Option<(bool, bool)>,
    /// Set by the session's cancel key: a held statement gives up its remaining rows.
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    /// Cancels the server's statement when pgseal ends one on its own.
    canceller: super::Canceller,
    /// pgseal has sent every row a streamed evaluated result may have (its `LIMIT`) and asked
    /// the server to stop: the cancel's error is the result's end.
    completing: bool,
    /// A statement has completed since the last ReadyForQuery (a `BEGIN` in the same group:
    /// a cancel would abort the transaction it opened).
    completed_since_ready: bool,
    /// The simple Query whose responses are arriving is read in pages ([`paging`]).
    paged: Option<PagedRead>,
}

impl Backend {
    /// The filter for a session of `role` on `database`.
    pub fn new(
        protection: Arc<Protection>,
        state: SharedState,
        session: Arc<SessionInfo>,
        canceller: super::Canceller,
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let class = protection.policy.class_of(&session.role);
        let (dates, generation) = {
            let state = lock(&state);
            (Arc::clone(&state.dates), state.protection.0)
        };
        Backend {
            unchanged: false,
            front_passes_rows: false,
            protection,
            generation,
            dates,
            state,
            class,
            database: session.database.clone(),
            session,
            ledger: Ledger::default(),
            query_error: None,
            transaction: b'I',
            cycle: None,
            cancelled,
            current: None,
            last_shape: None,
            last_description: Default::default(),
            suppressing: None,
            skip_to_ready: false,
            copy_out: None,
            catalog_rows: Vec::new(),
            catalog_failed: false,
            canceller,
            completing: false,
            completed_since_ready: false,
            paged: None,
        }
    }

    /// Ends the statement whose response is arriving with pgseal's error: its remaining rows
    /// are dropped, the server is asked to cancel it (so it fails there too, with what follows
    /// it in the transaction or pipeline), and the client gets `refusal` in place of its
    /// completion or of the server's error.
    fn fail_statement(&mut self, refusal: Refusal) {
        self.fail_result(refusal, true);
    }

    /// [`Backend::fail_statement`]; `cursor_moved` false when the statement is a FETCH of an
    /// evaluated cursor refused before it read anything (the cursor stays readable).
    fn fail_result(&mut self, refusal: Refusal, cursor_moved: bool) {
        if self.suppressing.is_some() {
            return;
        }
        self.suppressing = Some(refusal.clone());
        let mut state = lock(&self.state);
        let fetch = match state.expected.front() {
            Some(Expect::Query { cursor, .. } | Expect::Execute { cursor, .. }) => {
                fetching(cursor).map(|f| f.name.clone())
            }
            _ => None,
        };
        if let Some(name) = fetch.filter(|_| cursor_moved) {
            // The server's cursor is no longer where the client thinks it is.
            state.cursors.fail(&name, refusal);
        }
        drop(state);
        if self.paged_front() {
            // The server is failed at the end of the page, by pgseal's next step (or, for
            // an Execute, by the poisoned rest of its group).
            return;
        }
        let mut state = lock(&self.state);
        // Only when nothing after the statement has reached the server (its own Sync aside):
        // a cancel arriving late would fail the client's next statement instead. The frontend
        // sends nothing more until the cancel has arrived.
        let nothing_after = state
            .expected
            .iter()
            .skip(1)
            .all(|expect| matches!(expect, Expect::Sync));
        if nothing_after && state.expected.len() <= 2 && state.cancel_in_flight.is_none() {
            state.cancel_in_flight = Some(self.canceller.cancel(Arc::clone(&state.wake_frontend)));
        }
    }

    fn malformed(e: extended::Malformed) -> SessionError {
        SessionError::ServerProtocol(e.to_string())
    }

    fn front_is_catalog(&self) -> bool {
        is_catalog(lock(&self.state).expected.front())
    }

    /// The plan for a result's columns (with the refusal when a denied column is among them).
    /// A statement run again and again gets the same columns under the same catalog and
    /// policies: the last plan is shared then.
    ///
    /// `changed` is the session's catalog when it is not the one the last plan was made under
    /// ([`Backend::catalog_if_changed`]), `None` when it is.
    fn shape(
        &mut self,
        fields: &[Field<'_>],
        changed: Option<Arc<catalog::DatabaseCatalog>>,
    ) -> Arc<Shape> {
        if changed.is_none()
            && let Some((_, last)) = &self.last_shape
            && last.generation == self.generation
            && last.origins.len() == fields.len()
            && last
                .origins
                .iter()
                .zip(fields)
                .all(|(origin, field)| *origin == (field.table_oid, field.column))
        {
            return Arc::clone(last);
        }
        let catalog = match (changed, &self.last_shape) {
            (Some(catalog), _) => catalog,
            (None, Some((planned_in, _))) => Arc::clone(planned_in),
            (None, None) => Arc::clone(&lock(&self.state).catalog),
        };
        let origins = fields.iter().map(|f| (f.table_oid, f.column)).collect();
        let shape = Arc::new(self.shape_in(&catalog, origins));
        self.last_shape = Some((catalog, Arc::clone(&shape)));
        shape
    }

    /// The session's catalog when the last result's plan was made under another one; `None`
    /// when it is the same. The catalog is shared by the database's sessions: cloning its
    /// `Arc` for every result would bounce its count between the cores they run on.
    fn catalog_if_changed(
        &self,
        current: &Arc<catalog::DatabaseCatalog>,
    ) -> Option<Arc<catalog::DatabaseCatalog>> {
        match &self.last_shape {
            Some((planned_in, _)) if Arc::ptr_eq(planned_in, current) => None,
            _ => Some(Arc::clone(current)),
        }
    }

    /// The last result's plan when `frame` is, byte for byte, the RowDescription it was made
    /// from and it still holds (same policies; the caller checks the catalog is the same). A
    /// statement run again and again is then not decoded again.
    fn described_as_last(&self, frame: &[u8]) -> Option<Arc<Shape>> {
        match &self.last_shape {
            Some((_, shape))
                if shape.generation == self.generation && self.last_description.0 == frame =>
            {
                Some(Arc::clone(shape))
            }
            _ => None,
        }
    }

    /// Keeps `frame` for [`Backend::described_as_last`] when the description it was planned
    /// as passes unchanged (`plain`: a result pgseal does not evaluate, not pgseal's own
    /// Describe) and is not large; forgets the last one otherwise.
    fn remember_description(
        &mut self,
        frame: &[u8],
        plain: bool,
        shape: &Shape,
        formats: &extended::Formats,
    ) {
        let (kept, kept_formats) = &mut self.last_description;
        kept.clear();
        if plain
            && frame.len() <= DESCRIPTION_KEPT
            && shape
                .fields
                .iter()
                .all(|plan| matches!(plan, FieldPlan::Pass))
        {
            kept.extend_from_slice(frame);
            *kept_formats = copy_formats(formats);
        }
    }

    /// The plan for a result's columns from their origins (table OID, attribute number), under
    /// the session's current policies.
    fn shape_of(&self, origins: Vec<(u32, i16)>) -> Shape {
        let catalog = Arc::clone(&lock(&self.state).catalog);
        self.shape_in(&catalog, origins)
    }

    /// [`Backend::shape_of`] under a given catalog.
    fn shape_in(
        &self,
        catalog: &crate::protect::catalog::DatabaseCatalog,
        origins: Vec<(u32, i16)>,
    ) -> Shape {
        let policy = &self.protection.policy;
        let mut denied = None;
        let mut views: Vec<&'static str> = Vec::new();
        let mut plans = Vec::with_capacity(origins.len());
        let from_sealed_table = origins
            .iter()
            .any(|(table, _)| catalog.is_sealed_table(*table));
        for &(table, column) in &origins {
            let Some(sealed) = catalog.origin(table, column) else {
                plans.push(FieldPlan::Pass);
                continue;
            };
            let view = policy.view(self.class, sealed.column);
            if !views.contains(&view.name()) {
                views.push(view.name());
            }
            plans.push(match view {
                // A column marked `migrating` may hold plaintext: never passed as stored.
                View::Ciphertext if !self.protection.column(sealed.column).migrating => {
                    FieldPlan::Pass
                }
                View::Denied => {
                    denied.get_or_insert_with(|| {
                        Refusal::new(
                            "42501",
                            format!(
                                "permission denied for column {}: the pgseal policy denies it",
                                policy.column(sealed.column).qualified_name()
                            ),
                        )
                    });
                    FieldPlan::Pass
                }
                view => FieldPlan::Open { sealed, view },
            });
        }
        Shape {
            sealed: from_sealed_table || !views.is_empty(),
            views,
            fields: plans,
            denied,
            origins,
            generation: self.generation,
            formats: None,
        }
    }

    /// The RowDescription the client sees: its own columns (not pgseal's hidden ones), with
    /// declared types for opened columns.
    fn describe_fields(
        &self,
        fields: &[Field<'_>],
        shape: &Shape,
        out: &mut BytesMut,
    ) -> Result<(), SessionError> {
        let mut fields = fields.to_vec();
        for (field, plan) in fields.iter_mut().zip(&shape.fields) {
            if let FieldPlan::Open { sealed, view } = plan {
                let plain = self.protection.column(sealed.column).plain_type;
                let (oid, size, modifier) = match view {
                    View::Plaintext => (plain.oid(), type_size(&plain), plain.typmod()),
                    _ => (25, -1, -1),
                };
                field.type_oid = oid;
                field.type_size = size;
                field.type_modifier = modifier;
            }
        }
        extended::put_row_description(out, &fields);
        Ok(())
    }

    fn row_description(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        if self.describe_as_last(frame) {
            self.unchanged = true;
            return Ok(());
        }
        let (evaluation, catalog, shape_portal) = {
            let state = lock(&self.state);
            if Self::paged_front_in(&mut self.paged, &state)
                && (self.current.is_some() || self.paged_opening())
            {
                // A later page's description (the client has had it with the first), or that
                // of the opening's own query.
                return Ok(());
            }
            let front = state.expected.front();
            (
                front_evaluation(front),
                self.catalog_if_changed(&state.catalog),
                matches!(front, Some(Expect::ShapePortal(_))),
            )
        };
        let hidden = evaluation.as_ref().map_or(0, |e| e.hidden_count());
        // Decoded unless it is the last description again, for a result pgseal does not
        // evaluate: its fields are not needed then (it passes unchanged, its formats were kept).
        let again = match (&evaluation, shape_portal, &catalog) {
            (None, false, None) => self.described_as_last(frame),
            _ => None,
        };
        let all = match again {
            Some(_) => Default::default(),
            None => extended::decode_row_description(frame).map_err(Self::malformed)?,
        };
        if again.is_none() && all.len() < hidden {
            return Err(SessionError::ServerProtocol(
                "a result has fewer columns than pgseal asked for".into(),
            ));
        }
        let fields = all.get(hidden..).unwrap_or_default();
        let (mut shape, formats) = match again {
            Some(shape) => (shape, copy_formats(&self.last_description.1)),
            None => {
                let shape = self.shape(fields, catalog);
                let formats: extended::Formats = fields.iter().map(|f| f.format).collect();
                let plain = evaluation.is_none() && !shape_portal;
                self.remember_description(frame, plain, &shape, &formats);
                (shape, formats)
            }
        };
        if shape_portal {
            // pgseal's own Describe of a portal no Bind of the client's gave formats to.
            Arc::make_mut(&mut shape).formats = Some(formats.to_vec());
        }
        {
            let mut state = lock(&self.state);
            match state.expected.front() {
                Some(Expect::DescribeStatement(statement)) => {
                    *statement.shape.lock() = Some(Arc::clone(&shape));
                    state.expected.pop_front();
                }
                Some(Expect::DescribePortal(portal)) => {
                    *portal.shape.lock() = Some(Arc::clone(&shape));
                    // The columns and their origins are the statement's, whatever the portal:
                    // later portals of it that are executed without a Describe (PgJDBC's named
                    // statements past prepareThreshold) are rendered by this shape.
                    let mut statement_shape = portal.statement.shape.lock();
                    if statement_shape.is_none() {
                        *statement_shape = Some(Arc::clone(&shape));
                    }
                    drop(statement_shape);
                    state.expected.pop_front();
                }
                Some(Expect::ShapePortal(portal)) => {
                    *portal.shape.lock() = Some(shape);
                    state.expected.pop_front();
                    return Ok(());
                }
                Some(Expect::CatalogLoad { .. }) => return Ok(()),
                _ => {
                    // A simple Query's result: its rows follow.
                    // Only a result pgseal evaluates reads the catalog.
                    let catalog = evaluation.as_ref().map(|_| Arc::clone(&state.catalog));
                    // Its literals, in the settings they were read in when it was planned.
                    let (literal_dates, fetch) = match state.expected.front() {
                        Some(Expect::Query { dates, cursor, .. }) => {
                            (Arc::clone(dates), fetching(cursor).cloned())
                        }
                        _ => (Arc::default(), None),
                    };
                    // A later FETCH of an evaluated cursor: the rows kept from the first.
                    let (kept, kept_refusal) = match &fetch {
                        Some(f) => match state.cursors.take_rows(&f.name, &formats) {
                            Ok(kept) => (kept, None),
                            Err(refusal) => (None, Some(refusal)),
                        },
                        None => (None, None),
                    };
                    let elsewhere = state.cursors.kept();
                    drop(state);
                    if let Some(refusal) = kept_refusal {
                        // Refused before reading anything: the cursor stays readable.
                        self.current = Some(Current {
                            shape: Arc::clone(&shape),
                            formats,
                            evaluating: None,
                        });
                        self.fail_result(refusal, false);
                        return Ok(());
                    }
                    let evaluating =
                        evaluation
                            .zip(catalog)
                            .map(|(evaluation, catalog)| match &fetch {
                                Some(fetch) => Evaluating::new(
                                    &self.protection,
                                    &catalog,
                                    evaluation,
                                    &fetch.cursor.params,
                                    // A BINARY cursor sends every column in binary (its
                                    // hidden ones too: `all` is decoded whenever pgseal
                                    // evaluates the result).
                                    Format::from_code(all.first().map_or(0, |f| f.format)),
                                    &self.dates,
                                    (&fetch.cursor.literal_dates, &fetch.cursor.param_dates),
                                )
                                .map(|e| e.for_fetch(fetch.limit, kept, elsewhere)),
                                None => Evaluating::new(
                                    &self.protection,
                                    &catalog,
                                    evaluation,
                                    &[],
                                    Format::Text,
                                    &self.dates,
                                    (&literal_dates, &literal_dates),
                                ),
                            });
                    let (evaluating, failed) = match evaluating {
                        Some(Ok(mut e)) => {
                            // A BINARY cursor's count(*) is binary too.
                            e.count_format =
                                Format::from_code(formats.first().copied().unwrap_or(0));
                            (Some(Box::new(e)), None)
                        }
                        Some(Err(refusal)) => (None, Some(refusal)),
                        None => (None, None),
                    };
                    self.note_evaluation(evaluating.is_some());
                    self.current = Some(Current {
                        shape: Arc::clone(&shape),
                        formats,
                        evaluating,
                    });
                    if let Some(refusal) = shape.denied.clone().or(failed) {
                        self.fail_statement(refusal);
                        return Ok(());
                    }
                }
            }
        }
        // A described statement or portal with a denied column is refused when it runs; its
        // description reveals only names and types.
        if hidden == 0
            && shape
                .fields
                .iter()
                .all(|plan| matches!(plan, FieldPlan::Pass))
        {
            // Nothing to change: the server's own message.
            self.unchanged = true;
            return Ok(());
        }
        self.describe_fields(fields, &shape, out)
    }

    /// The short path of a RowDescription that is, byte for byte, the last one again
    /// ([`Backend::described_as_last`]), under the same catalog, with nothing to change in
    /// it and no denied column, answering the client's Describe of a portal or a simple
    /// Query's statement that pgseal does not evaluate nor read a cursor for, while nothing is
    /// paged: the last shape is the result's, under one lock, and the frame goes on as it
    /// came — what the full path would do. Otherwise does nothing and says no.
    fn describe_as_last(&mut self, frame: &[u8]) -> bool {
        if self.paged.is_some() {
            return false;
        }
        let Some((planned_in, last)) = &self.last_shape else {
            return false;
        };
        if last.generation != self.generation
            || last.denied.is_some()
            || self.last_description.0 != frame
        {
            return false;
        }
        let mut state = lock(&self.state);
        if state.paging.is_some() || !Arc::ptr_eq(planned_in, &state.catalog) {
            return false;
        }
        match state.expected.front() {
            Some(Expect::DescribePortal(portal))
                if portal.statement.evaluation.is_none() && portal.statement.fetches.is_none() =>
            {
                *portal.shape.lock() = Some(Arc::clone(last));
                // As in the full path: later portals of the statement run without a Describe
                // are rendered by it.
                let mut statement_shape = portal.statement.shape.lock();
                if statement_shape.is_none() {
                    *statement_shape = Some(Arc::clone(last));
                }
                drop(statement_shape);
                state.expected.pop_front();
            }
            Some(Expect::Query {
                evaluation: None,
                cursor: None,
                ..
            }) => {
                drop(state);
                self.current = Some(Current {
                    shape: Arc::clone(last),
                    formats: copy_formats(&self.last_description.1),
                    evaluating: None,
                });
            }
            _ => return false,
        }
        true
    }

    /// Counts a result pgseal evaluates.
    fn note_evaluation(&self, evaluated: bool) {
        if evaluated {
            self.protection
                .metrics
                .evaluated_statements
                .with(&[&self.session.role])
                .inc();
        }
    }

    /// Starts charging rows to the statement whose result is arriving: the account the
    /// frontend chose, or — when the rows carry sealed columns although the statement text
    /// named none (a cursor, a view) — the role's account, as sealed rows.
    fn start_counting(&mut self) {
        if self.ledger.active() {
            return;
        }
        let count = match lock(&self.state).expected.front() {
            Some(Expect::Query { count, .. } | Expect::Execute { count, .. }) => count.clone(),
            _ => None,
        };
        let carries_sealed =
            self.current.as_ref().is_some_and(|c| c.shape.sealed) || self.copy_out.is_some();
        let count = match count {
            Some(count) if count.statement.sealed || !carries_sealed => Some(count),
            _ if carries_sealed => Some(self.fallback_counting()),
            other => other,
        };
        if let Some(count) = count {
            self.start_ledger(&count, true);
        }
    }

    /// Starts charging a statement's rows to the account of the end user the server has
    /// confirmed by now (or the statement's own comment); a class that requires an end user
    /// gets none of the rows without one.
    fn start_ledger(&mut self, count: &Arc<Counting>, check_end_user: bool) {
        let end_user = lock(&self.state)
            .end_users
            .for_statement(count.statement.end_user.as_deref())
            .map(str::to_string);
        let account = self
            .protection
            .budgets
            .account(&self.session.role, end_user.as_deref());
        if check_end_user
            && count.statement.sealed
            && let Err(reason) = account.check_end_user()
        {
            self.fail_statement(Refusal {
                sqlstate: reason.sqlstate(),
                message: reason.message(),
                hint: reason.hint(),
            });
        }
        self.ledger.start(count, account, end_user);
    }

    /// Starts the ledger from the response in front, when its statement is counted (so that a
    /// statement ending without rows is on record too).
    /// `check_end_user`: whether a missing end user fails the statement (not when the server
    /// failed it already).
    fn start_counting_if_counted(&mut self, check_end_user: bool) {
        if self.ledger.active() {
            return;
        }
        let count = counting_of(lock(&self.state).expected.front());
        if let Some(count) = count {
            self.start_ledger(&count, check_end_user);
        }
    }

    fn fallback_counting(&self) -> Arc<Counting> {
        let end_user = lock(&self.state).end_users.current().map(str::to_string);
        Arc::new(Counting {
            statement: Arc::new(StatementInfo {
                sealed: true,
                fingerprint: crate::audit::Fingerprint::of("rows with sealed columns"),
                tables: Vec::new(),
                columns: Vec::new(),
                end_user: None,
            }),
            end_user,
            started: std::time::Instant::now(),
        })
    }

    /// Charges one row to the budget; `None` to send it, `Some(flow)` otherwise (held, or
    /// dropped because the statement is now blocked).
    fn charge(&mut self) -> Option<Flow> {
        self.start_counting();
        if self.ledger.active()
            && self
                .cancelled
                .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            // The server is told too; its own error follows the rows it already sent, which
            // are dropped rather than paced out.
            self.suppressing.get_or_insert(Refusal::new(
                "57014",
                "canceling statement due to user request",
            ));
            return Some(Flow::Done);
        }
        match self.ledger.charge(&self.protection, &self.session.role) {
            Charge::Go => None,
            Charge::Hold(delay) => Some(Flow::Hold(delay)),
            Charge::Block(refusal) => {
                self.fail_statement(refusal);
                Some(Flow::Done)
            }
        }
    }

    /// Sets the current result for the rows of an Execute, from its portal (and refuses it
    /// when its shape has a denied column).
    fn current_for_execute(&mut self) {
        if self.current.is_some() {
            return;
        }
        let (portal, row_limit, fetch) = match lock(&self.state).expected.front() {
            Some(Expect::Execute {
                portal,
                row_limit,
                cursor,
                ..
            }) => (Arc::clone(portal), *row_limit, fetching(cursor).cloned()),
            _ => return,
        };
        let evaluation = statement_evaluation(&portal.statement);
        let shape = match (portal.shape(), &evaluation) {
            // Described before a reload: planned again under the policies in force now.
            (Some(shape), _) if shape.generation != self.generation => {
                let mut again = self.shape_of(shape.origins.clone());
                again.formats = shape.formats.clone();
                Arc::new(again)
            }
            (Some(shape), _) => shape,
            // Not described: its own columns pass as stored, pgseal's are still removed.
            (None, Some(_)) => Arc::new(Shape {
                fields: Vec::new(),
                sealed: true,
                views: Vec::new(),
                denied: None,
                origins: Vec::new(),
                generation: self.generation,
                formats: None,
            }),
            (None, None) => return,
        };
        if let Some(refusal) = &shape.denied {
            self.fail_statement(refusal.clone());
        }
        let n = shape.fields.len();
        let formats: extended::Formats = match &shape.formats {
            Some(described) => described.iter().copied().collect(),
            None => (0..n)
                .map(|i| format_at(&portal.result_formats, i))
                .collect(),
        };
        let evaluating = evaluation.map(|evaluation| {
            let catalog = Arc::clone(&lock(&self.state).catalog);
            // One format code applies to every column, pgseal's too; otherwise they are text.
            let hidden_format = match portal.result_formats.as_slice() {
                [one] => Format::from_code(*one),
                _ => Format::Text,
            };
            // A later Execute of a portal pgseal suspended: its rows are the ones left.
            let leftover = portal.leftover.lock().take();
            if let Some(fetch) = &fetch {
                // A FETCH of an evaluated cursor: its DECLARE's parameters and settings.
                let evaluating = Evaluating::new(
                    &self.protection,
                    &catalog,
                    evaluation,
                    &fetch.cursor.params,
                    hidden_format,
                    &self.dates,
                    (&fetch.cursor.literal_dates, &fetch.cursor.param_dates),
                );
                return evaluating.and_then(|mut e| {
                    if let Some(leftover) = leftover {
                        e.resume(leftover);
                    } else {
                        let mut state = lock(&self.state);
                        let kept = state
                            .cursors
                            .take_rows(&fetch.name, &portal.result_formats)?;
                        e = e.for_fetch(fetch.limit, kept, state.cursors.kept());
                    }
                    e.row_limit = row_limit;
                    Ok(Box::new(e))
                });
            }
            Evaluating::new(
                &self.protection,
                &catalog,
                evaluation,
                &portal.evaluation_params,
                hidden_format,
                &self.dates,
                // Literals as read at Parse, parameters as read at Bind.
                (&portal.statement.dates, &portal.dates),
            )
            .map(|mut e| {
                e.row_limit = row_limit;
                if let Some(leftover) = leftover {
                    e.resume(leftover);
                }
                Box::new(e)
            })
        });
        let evaluating = match evaluating {
            Some(Ok(mut e)) => {
                e.count_format = Format::from_code(format_at(&portal.result_formats, 0));
                Some(e)
            }
            Some(Err(refusal)) => {
                self.fail_statement(refusal);
                None
            }
            None => None,
        };
        self.note_evaluation(evaluating.is_some());
        self.current = Some(Current {
            shape,
            formats,
            evaluating,
        });
    }

    fn data_row(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        if self.front_is_catalog() {
            let mut values = Vec::new();
            extended::decode_data_row(frame, &mut values).map_err(Self::malformed)?;
            self.catalog_rows.push(
                values
                    .iter()
                    .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            );
            return Ok(Flow::Done);
        }
        if self.suppressing.is_some() {
            return Ok(Flow::Done);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.evaluating.is_some())
        {
            return self.evaluated_row(frame, out);
        }
        if let Some(flow) = self.charge() {
            return Ok(flow);
        }
        let Some(current) = &self.current else {
            return Ok(Flow::Unchanged);
        };
        self.ledger
            .count_views(&self.protection, &self.session.role, &current.shape.views);
        if !current.shape.needs_work() {
            // Counted (a sealed table's row), but nothing in it to open.
            return Ok(Flow::Unchanged);
        }
        let mut values = Vec::with_capacity(current.shape.fields.len());
        extended::decode_data_row(frame, &mut values).map_err(Self::malformed)?;
        if let Err(refusal) = render_row(
            &self.protection,
            &values,
            &current.shape,
            &current.formats,
            &self.dates,
            &[],
            out,
        ) {
            self.fail_statement(refusal);
        }
        Ok(Flow::Done)
    }

    /// A DataRow of a result pgseal evaluates: its hidden values decide whether it is kept
    /// and where it sorts; a kept row goes on (streamed) or is held (pgseal's sort), without
    /// the hidden columns. Only rows sent are charged to the budget.
    fn evaluated_row(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        let mut values = Vec::new();
        extended::decode_data_row(frame, &mut values).map_err(Self::malformed)?;
        let Some(current) = self.current.as_mut() else {
            return Ok(Flow::Done);
        };
        let Some(evaluating) = current.evaluating.as_mut() else {
            return Ok(Flow::Done);
        };
        let hidden = evaluating.hidden_count();
        if values.len() < hidden {
            self.fail_statement(Refusal::new(
                "08P01",
                "a row of the result has fewer values than pgseal asked for",
            ));
            return Ok(Flow::Done);
        }
        if evaluating.resumed {
            // pgseal read this portal or cursor to its end already: the server has no row
            // left to give, unless it is not the one pgseal evaluated.
            self.fail_statement(Refusal::new(
                "08P01",
                "the server returned rows for a result pgseal had already read to its end",
            ));
            return Ok(Flow::Done);
        }
        // The row's hidden values, kept for its rendering: what they opened is not opened again.
        let mut hidden_row = None;
        if !evaluating.waiting {
            if evaluating.run.exhausted() {
                return Ok(Flow::Done);
            }
            let decided = evaluating
                .read(&self.protection, &values[..hidden])
                .and_then(|row| {
                    if !evaluating.run.keep(&row)? {
                        return Ok(None);
                    }
                    Ok(Some(row))
                });
            let row = match decided {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(Flow::Done),
                Err(refusal) => {
                    self.fail_statement(refusal);
                    return Ok(Flow::Done);
                }
            };
            if evaluating.counts_only() {
                evaluating.counted += 1;
                return Ok(Flow::Done);
            }
            if evaluating.holds() {
                let admitted = match evaluating.run.admit(&row) {
                    Ok(Some(admitted)) => admitted,
                    Ok(None) => return Ok(Flow::Done),
                    Err(error) => {
                        self.fail_statement(error.into());
                        return Ok(Flow::Done);
                    }
                };
                let mut rendered = BytesMut::new();
                let held = render_row(
                    &self.protection,
                    &values[hidden..],
                    &current.shape,
                    &current.formats,
                    &self.dates,
                    &evaluating.opened(&values[..hidden], &row),
                    &mut rendered,
                )
                .and_then(|()| Ok(evaluating.run.hold(admitted, rendered.to_vec())?));
                rendered.fill(0);
                if let Err(refusal) = held {
                    self.fail_statement(refusal);
                }
                return Ok(Flow::Done);
            }
            match evaluating.run.step() {
                Step::Skip | Step::Stop => return Ok(Flow::Done),
                Step::Emit => evaluating.waiting = true,
            }
            hidden_row = Some(row);
        }
        if let Some(flow) = self.charge() {
            return Ok(flow);
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(Flow::Done);
        };
        let mut opened = SmallVec::new();
        if let Some(evaluating) = current.evaluating.as_mut() {
            evaluating.waiting = false;
            evaluating.emitted += 1;
            evaluating.sent += 1;
            if let Some(row) = &hidden_row {
                opened = evaluating.opened(&values[..hidden], row);
            }
        }
        let rendered = render_row(
            &self.protection,
            &values[hidden..],
            &current.shape,
            &current.formats,
            &self.dates,
            &opened,
            out,
        );
        self.ledger
            .count_views(&self.protection, &self.session.role, &current.shape.views);
        if let Err(refusal) = rendered {
            self.fail_statement(refusal);
        } else if self
            .current
            .as_ref()
            .and_then(|c| c.evaluating.as_ref())
            .is_some_and(|e| e.run.exhausted())
        {
            self.finish_early();
        }
        Ok(Flow::Done)
    }

    /// Every row a streamed evaluated result may send is sent (its `LIMIT`): rather than read
    /// the rest of the table to drop it, pgseal cancels the server's statement and ends the
    /// result itself when the cancel's error comes. Only where the cancel changes nothing the
    /// client can see: outside a transaction block, with nothing after the statement but its
    /// Sync (the statement is a plain SELECT: its implicit transaction has nothing to lose).
    fn finish_early(&mut self) {
        if self.paged_front()
            || self.completing
            || self.suppressing.is_some()
            || self.transaction != b'I'
            || self.completed_since_ready
        {
            return;
        }
        let mut state = lock(&self.state);
        let alone = match (state.expected.front(), state.expected.get(1)) {
            // A cursor's FETCH ALL: a cancel would end the cursor, not only the FETCH.
            (
                Some(
                    Expect::Query {
                        cursor: Some(_), ..
                    }
                    | Expect::Execute {
                        cursor: Some(_), ..
                    },
                ),
                _,
            ) => false,
            (Some(Expect::Query { .. }), None) => true,
            (Some(Expect::Execute { .. }), Some(Expect::Sync)) => state.expected.len() == 2,
            _ => false,
        };
        if alone && state.cancel_in_flight.is_none() {
            state.cancel_in_flight = Some(self.canceller.cancel(Arc::clone(&state.wake_frontend)));
            self.completing = true;
        }
    }

    /// At the end of a result pgseal sorted: sends the held rows in order, each charged to
    /// the budget (`Some(flow)` while one waits for it).
    fn send_sorted(&mut self, out: &mut BytesMut) -> Option<Flow> {
        loop {
            let current = self.current.as_mut()?;
            let views = current.shape.views.clone();
            let evaluating = current.evaluating.as_mut()?;
            let format = evaluating.count_format;
            if evaluating.counts_only() {
                // A count is answered once per portal: run again, it has no row (as the
                // server's exhausted portal).
                if evaluating.finished || evaluating.resumed || self.suppressing.is_some() {
                    return None;
                }
                if let Some(flow) = self.charge() {
                    return (self.suppressing.is_none()).then_some(flow);
                }
                let current = self.current.as_mut()?;
                let evaluating = current.evaluating.as_mut()?;
                evaluating.finished = true;
                out.extend_from_slice(&evaluating.count_row(format));
                evaluating.emitted = 1;
                evaluating.sent = 1;
                return None;
            }
            if !evaluating.holds() || self.suppressing.is_some() {
                return None;
            }
            if !evaluating.finished {
                evaluating.finished = true;
                evaluating.pending = evaluating.run.finish().into();
            }
            if evaluating.pending.is_empty() || evaluating.at_row_limit() {
                return None;
            }
            if let Some(flow) = self.charge() {
                if self.suppressing.is_some() {
                    return None;
                }
                return Some(flow);
            }
            let current = self.current.as_mut()?;
            let evaluating = current.evaluating.as_mut()?;
            if let Some(row) = evaluating.pending.pop_front() {
                out.extend_from_slice(&row);
                evaluating.emitted += 1;
                evaluating.sent += 1;
            }
            self.ledger
                .count_views(&self.protection, &self.session.role, &views);
        }
    }

    /// The CommandComplete of a result pgseal evaluated: the rows it sent, not the server's.
    fn evaluated_tag(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        if frame.first() != Some(&b'C') {
            return None;
        }
        let current = self.current.as_mut()?;
        let evaluating = current.evaluating.as_mut()?;
        let (scanned, sent) = (evaluating.run.scanned(), evaluating.sent);
        let subquery_rows = evaluating.tally.subquery_rows;
        if evaluating.tally.unverified > 0 {
            warn!(
                values = evaluating.tally.unverified,
                collation = %evaluating.run.order().describe(),
                "pgseal compared text holding characters whose order its collation data may give differently from the server's ICU (CJK radicals, characters encoded since Unicode 15…): the order or filter of those rows may differ from PostgreSQL's"
            );
        }
        self.ledger.note_scanned(scanned);
        let role = &self.session.role;
        let metrics = &self.protection.metrics;
        metrics
            .evaluated_rows
            .with(&[role, "scanned"])
            .inc_by(scanned);
        metrics
            .evaluated_rows
            .with(&[role, "returned"])
            .inc_by(sent);
        if subquery_rows > 0 {
            metrics
                .evaluated_rows
                .with(&[role, "subquery"])
                .inc_by(subquery_rows);
        }
        let mut verb = "SELECT";
        if self.suppressing.is_none() {
            let mut state = lock(&self.state);
            let (fetch, portal) = match state.expected.front() {
                Some(Expect::Query { cursor, .. }) => (fetching(cursor).cloned(), None),
                Some(Expect::Execute { cursor, portal, .. }) => {
                    (fetching(cursor).cloned(), Some(Arc::clone(portal)))
                }
                _ => (None, None),
            };
            let left = match &fetch {
                Some(fetch) => {
                    verb = "FETCH";
                    let (left, beyond) = evaluating.split_fetch();
                    // The rows past the FETCH's count wait for the cursor's next FETCH (a
                    // portal's later Execute keeps the cursor's rows as they are).
                    if evaluating.fetch_count.is_some() {
                        let formats = match &portal {
                            Some(portal) => portal.result_formats.to_vec(),
                            None => current.formats.to_vec(),
                        };
                        state.cursors.keep_rows(&fetch.name, beyond, formats);
                    }
                    left
                }
                None => std::mem::take(&mut evaluating.pending),
            };
            if let Some(portal) = portal {
                // The rows past the client's limit wait in the portal for its next Execute (the
                // server's portal is exhausted: it answers that Execute with no row); a portal
                // run to its end keeps none, and runs again with none.
                *portal.leftover.lock() = Some(left);
                if evaluating.suspends() {
                    return Some(frame_of(b's', b""));
                }
            }
        }
        Some(frame_of(b'C', format!("{verb} {sent}\0").as_bytes()))
    }

    /// The end of one result (CommandComplete, EmptyQueryResponse, PortalSuspended).
    fn end_of_result(
        &mut self,
        frame: &[u8],
        as_sent: bool,
        out: &mut BytesMut,
    ) -> Result<(), SessionError> {
        self.current = None;
        self.completing = false;
        self.completed_since_ready = true;
        self.copy_out = None;
        let mut state = lock(&self.state);
        let front_is_execute = matches!(state.expected.front(), Some(Expect::Execute { .. }));
        if matches!(state.expected.front(), Some(Expect::CatalogLoad { .. })) {
            return Ok(());
        }
        // The statement's effect on end-user and transaction state, now the server confirms it
        // (before the ledger starts: `SET pgseal.end_user …; SELECT …` in one Query charges the
        // SELECT to the new end user).
        let tag = match frame[0] {
            b'C' => extended::decode_command_complete(frame)
                .ok()
                .unwrap_or_default(),
            _ => b"",
        };
        // A statement that may have changed DateStyle or TimeZone has run: the server prints
        // in the new settings from here on but reports them only with ReadyForQuery, so until
        // then sealed dates and times are not printed in text.
        if state.dates_changing && may_have_changed_settings(tag) {
            self.dates = Arc::new(DateSettings::stale());
        }
        if frame[0] != b's' {
            let event = match state.expected.front_mut() {
                Some(Expect::Query { events, .. }) => events.pop_front(),
                Some(Expect::Execute { portal, .. }) => portal.statement.events.first().cloned(),
                _ => None,
            };
            if let Some(event) = event {
                txevents::apply(&mut state.end_users, &event, tag);
                match event {
                    TxEvent::Commit => state.cursors.on_transaction_end(tag == b"COMMIT"),
                    TxEvent::Rollback => state.cursors.on_transaction_end(false),
                    _ => {}
                }
            }
            if tag.starts_with(b"DECLARE CURSOR") {
                let declared = match state.expected.front() {
                    Some(Expect::Query { cursor, .. } | Expect::Execute { cursor, .. }) => {
                        match cursor {
                            Some(CursorOp::Declare { name, id }) => Some((name.clone(), *id)),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some((name, id)) = declared {
                    state.cursors.confirm(&name, id);
                }
            } else if tag == b"DISCARD ALL" {
                state.cursors.clear();
            }
        }
        // A statement that returned no row is still on record.
        // (As `start_counting_if_counted`, under the lock already held.)
        let count = match self.ledger.active() {
            true => None,
            false => counting_of(state.expected.front()),
        };
        if let Some(count) = count {
            drop(state);
            self.start_ledger(&count, true);
            state = lock(&self.state);
        }
        let mut group = None;
        if front_is_execute && let Some(ended) = state.expected.pop_front() {
            state.open_gate(&ended);
            if let Expect::Execute { group: g, .. } = ended {
                group = Some(g);
            }
        }
        if self.suppressing.is_some() {
            // pgseal ended the statement and the server completed it anyway: the client is
            // told it failed, so the server must fail what follows in the group too (the
            // frontend drops the rest and poisons its Sync), and nothing more of it reaches the
            // client up to ReadyForQuery.
            state.failed_group = group;
            self.skip_to_ready = true;
        }
        drop(state);
        if is_ddl(tag) {
            lock(&self.state).catalog_stale = true;
            self.protection.catalogs.invalidate(&self.database);
        }
        let sqlstate = self.suppressing.as_ref().map(|r| r.sqlstate.to_string());
        match self.suppressing.take() {
            Some(refusal) => {
                out.extend_from_slice(&error_response(
                    Severity::Error,
                    refusal.sqlstate,
                    &refusal.message,
                    refusal.hint.as_deref(),
                ));
                if !front_is_execute {
                    self.query_error
                        .get_or_insert_with(|| refusal.sqlstate.to_string());
                }
            }
            // The server's own message goes on from where it was read.
            None if as_sent => self.unchanged = true,
            None => out.extend_from_slice(frame),
        }
        if front_is_execute {
            self.ledger
                .finish(&self.protection, &self.session, sqlstate.as_deref());
        }
        Ok(())
    }

    fn error(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        if self.paged.as_ref().is_some_and(|p| p.portal.is_some()) {
            // The error ends the Execute read in pages (the server skips to Sync); the
            // client's held Execute goes when its response is discarded.
            self.paged = None;
        }
        if std::mem::take(&mut self.completing)
            && error_code(frame).as_deref() == Some("57014")
            && self.suppressing.is_none()
        {
            // The cancel pgseal sent once the LIMIT was reached: the result ends here. The
            // server rolled back the implicit transaction, as pgseal's end-user state must.
            if let Some(cycle) = self.cycle.as_mut() {
                cycle.1 = true;
            }
            self.current_for_execute();
            if let Some(tag) = self.evaluated_tag(b"C\0\0\0\x04") {
                if matches!(
                    lock(&self.state).expected.front(),
                    Some(Expect::Execute { .. })
                ) {
                    // The server skips to the Sync, which is all that follows.
                    lock(&self.state).server_skipping = false;
                }
                return self.end_of_result(&tag, false, out);
            }
        }
        self.error_response(frame, out);
        Ok(())
    }

    fn error_response(&mut self, frame: &[u8], out: &mut BytesMut) {
        // When pgseal ended the statement itself, the server's error (most often the cancel
        // pgseal sent) gives way to pgseal's.
        let ours = self.suppressing.take().map(|refusal| {
            error_response(
                Severity::Error,
                refusal.sqlstate,
                &refusal.message,
                refusal.hint.as_deref(),
            )
        });
        let frame: &[u8] = match &ours {
            Some(replacement) => replacement,
            None => frame,
        };
        self.start_counting_if_counted(false);
        if let Some(cycle) = self.cycle.as_mut() {
            cycle.1 = true;
        }
        self.current = None;
        self.copy_out = None;
        self.suppressing = None;
        let sqlstate = error_code(frame);
        let mut state = lock(&self.state);
        let cursor = match state.expected.front() {
            Some(Expect::Query { cursor, .. } | Expect::Execute { cursor, .. }) => cursor.clone(),
            _ => None,
        };
        match cursor {
            // The server refused the DECLARE: what was there before stands.
            Some(CursorOp::Declare { name, id }) => state.cursors.reject(&name, id),
            // The server has no such cursor (closed, its transaction ended).
            Some(CursorOp::Fetch(fetch)) if sqlstate.as_deref() == Some("34000") => {
                state.cursors.close(Some(&fetch.name));
            }
            _ => {}
        }
        match state.expected.front() {
            Some(Expect::Query { refused, .. }) => {
                let sqlstate = match refused {
                    Some(refusal) => Some(refusal.sqlstate.to_string()),
                    None => sqlstate.clone(),
                };
                self.query_error
                    .get_or_insert_with(|| sqlstate.unwrap_or_default());
            }
            Some(Expect::Execute { .. }) => {
                self.ledger
                    .finish(&self.protection, &self.session, sqlstate.as_deref());
            }
            _ => {}
        }
        match state.expected.front() {
            Some(Expect::CatalogLoad { .. }) => {
                self.catalog_failed = true;
            }
            Some(Expect::Query {
                refused: Some(refusal),
                ..
            }) => {
                out.extend_from_slice(&error_response(
                    Severity::Error,
                    refusal.sqlstate,
                    &refusal.message,
                    refusal.hint.as_deref(),
                ));
            }
            Some(Expect::Query { .. }) => out.extend_from_slice(frame),
            Some(Expect::Refused(refusal)) => {
                out.extend_from_slice(&error_response(
                    Severity::Error,
                    refusal.sqlstate,
                    &refusal.message,
                    refusal.hint.as_deref(),
                ));
                state.expected.pop_front();
                drain_to_sync(&mut state);
                if state.expected.is_empty() {
                    state.server_skipping = true;
                }
            }
            Some(_) => {
                out.extend_from_slice(frame);
                if let Some(failed) = state.expected.pop_front() {
                    state.discard(&failed);
                }
                drain_to_sync(&mut state);
                if state.expected.is_empty() {
                    state.server_skipping = true;
                }
            }
            // An error nothing asked for (e.g. FATAL on shutdown): passed on.
            None => out.extend_from_slice(frame),
        }
    }

    fn ready(&mut self, frame: &[u8]) {
        self.current = None;
        self.completing = false;
        self.completed_since_ready = false;
        self.suppressing = None;
        self.skip_to_ready = false;
        let error = self.query_error.take();
        self.ledger
            .finish(&self.protection, &self.session, error.as_deref());
        // A cancel that came between statements concerns none.
        self.cancelled
            .store(false, std::sync::atomic::Ordering::Release);
        let mut state = lock(&self.state);
        state.server_skipping = false;
        if let Some(status) = extended::ready_status(frame) {
            // An implicit transaction (statements sent outside BEGIN) ends here, committed
            // unless one of them failed.
            if let Some((true, failed)) = self.cycle.take()
                && status == b'I'
            {
                state.end_users.on_transaction_end(!failed);
                state.cursors.on_transaction_end(!failed);
            }
            self.transaction = status;
            state.transaction = status;
        }
        self.cycle = None;
        // Every change of DateStyle and TimeZone so far has been reported (ParameterStatus
        // comes before ReadyForQuery).
        self.dates = Arc::clone(&state.dates);
        if state.expected.len() <= 1 {
            // Nothing else in flight: the speculative state starts again from the confirmed one.
            state.end_users_sent = state.end_users.clone();
            state.dates_changing = false;
        }
        // Responses still queued before the one this answers were skipped by the server.
        while let Some(front) = state.expected.front() {
            if matches!(
                front,
                Expect::Sync | Expect::Query { .. } | Expect::CatalogLoad { .. }
            ) {
                break;
            }
            if let Some(skipped) = state.expected.pop_front() {
                state.discard(&skipped);
            }
        }
        match state.expected.pop_front() {
            Some(Expect::CatalogLoad {
                generation,
                protection,
            }) => {
                let rows = std::mem::take(&mut self.catalog_rows);
                if std::mem::take(&mut self.catalog_failed) {
                    // Kept stale: the next idle moment tries again.
                    state.catalog_stale = true;
                    state.catalog_load_failed = true;
                    warn!(database = %self.database, "pgseal's catalog query failed; sealed result columns pass as stored until it succeeds");
                } else {
                    let loaded = catalog::build(&protection.policy, &rows, generation);
                    state.catalog = protection.catalogs.store(
                        &self.database,
                        loaded,
                        protection.catalog_max_age(),
                    );
                }
                // A statement held for the first catalog goes on.
                state.wake_frontend.notify_one();
            }
            Some(Expect::Query { .. }) => {
                if state.paging.as_ref().is_some_and(|p| p.portal.is_none()) {
                    // The Query read in pages is answered, whatever happened: never held on.
                    state.end_paging();
                }
                self.unchanged = true;
            }
            _ => self.unchanged = true,
        }
    }
}

impl Drop for Backend {
    /// A statement still running when the session ends (its client went, pgseal shut down) is
    /// recorded with the rows already sent.
    fn drop(&mut self) {
        self.ledger
            .finish(&self.protection, &self.session, Some("08006"));
    }
}

impl Backend {
    /// A ParameterStatus: the settings pgseal follows (lexing, dates) updated, and the frame
    /// passed on.
    fn parameter_status(&mut self, frame: &[u8], out: &mut BytesMut) {
        let mut state = lock(&self.state);
        state.lexing.apply(frame);
        crate::session::auth::apply_date_status(Arc::make_mut(&mut state.dates), frame);
        self.dates = Arc::clone(&state.dates);
        drop(state);
        out.extend_from_slice(frame);
    }
}

/// Whether the response in front is to pgseal's catalog query.
fn is_catalog(front: Option<&Expect>) -> bool {
    matches!(front, Some(Expect::CatalogLoad { .. }))
}

/// The account the statement whose response is in front charges its rows to, when it is
/// counted.
fn counting_of(front: Option<&Expect>) -> Option<Arc<Counting>> {
    match front {
        Some(Expect::Query { count, .. } | Expect::Execute { count, .. }) => count.clone(),
        _ => None,
    }
}

/// The largest RowDescription kept to be recognised when it comes again (a few dozen
/// columns).
const DESCRIPTION_KEPT: usize = 2048;

/// Whether a CommandComplete tag is that of a statement that may change DateStyle or TimeZone
/// (SET, RESET, DISCARD, a transaction's end, DO, CALL).
fn may_have_changed_settings(tag: &[u8]) -> bool {
    [
        &b"SET"[..],
        b"RESET",
        b"DISCARD",
        b"COMMIT",
        b"ROLLBACK",
        b"DO",
        b"CALL",
        b"PREPARE TRANSACTION",
    ]
    .iter()
    .any(|prefix| tag.starts_with(prefix))
}

/// What pgseal evaluates in the statement whose description or rows come next (nothing for
/// pgseal's catalog query).
fn front_evaluation(front: Option<&Expect>) -> Option<Arc<Evaluation>> {
    match front {
        Some(Expect::Query {
            evaluation, cursor, ..
        }) => evaluation
            .clone()
            .or_else(|| fetching(cursor).map(|f| Arc::clone(&f.cursor.evaluation))),
        Some(Expect::DescribeStatement(statement)) => statement_evaluation(statement),
        Some(Expect::DescribePortal(portal) | Expect::ShapePortal(portal)) => {
            statement_evaluation(&portal.statement)
        }
        _ => None,
    }
}

/// What pgseal evaluates in a prepared statement's rows: its own query's, or for a FETCH of an
/// evaluated cursor, the cursor's.
fn statement_evaluation(statement: &Prepared) -> Option<Arc<Evaluation>> {
    statement.evaluation.clone().or_else(|| {
        statement
            .fetches
            .as_ref()
            .map(|f| Arc::clone(&f.cursor.evaluation))
    })
}

/// The size of a paged read's next page, from what the evaluation of `current` kept so far.
fn next_page(asked: u64, current: Option<&Current>) -> u64 {
    let run = current.and_then(|c| c.evaluating.as_ref()).map(|e| &e.run);
    match run.and_then(|run| Some((run, run.remaining()?))) {
        Some((run, remaining)) => paging::next_fetch(asked, run.scanned(), run.kept(), remaining),
        None => paging::next_fetch(asked, 0, 0, 0),
    }
}

/// One message, `tag` then `body`, as bytes.
fn frame_of(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = BytesMut::with_capacity(5 + body.len());
    extended::put_frame(&mut frame, tag, |b| b.extend_from_slice(body));
    frame.to_vec()
}

/// The FETCH of an evaluated cursor a response belongs to, if it is one.
fn fetching(cursor: &Option<CursorOp>) -> Option<&Arc<Fetching>> {
    match cursor {
        Some(CursorOp::Fetch(fetch)) => Some(fetch),
        _ => None,
    }
}

/// A copy of a result's formats: a copy of their bytes (`SmallVec`'s `Clone` goes element by
/// element, several times dearer for these few `i16`s, on the path of every result).
fn copy_formats(formats: &extended::Formats) -> extended::Formats {
    extended::Formats::from_slice(formats)
}

/// After an error in the extended protocol the server skips every message up to Sync —
/// simple Queries included, pgseal's own catalog queries too (which are then retried).
fn drain_to_sync(state: &mut Shared) {
    while let Some(front) = state.expected.front() {
        if matches!(front, Expect::Sync) {
            break;
        }
        if let Some(skipped) = state.expected.pop_front() {
            if matches!(skipped, Expect::CatalogLoad { .. }) {
                state.catalog_stale = true;
            }
            state.discard(&skipped);
        }
    }
}

/// Renders a row's values (the client's columns) into `out` as one DataRow: sealed columns
/// opened and rendered in the role's view. A shape without fields (a result never described)
/// passes every value as stored.
fn render_row(
    protection: &Protection,
    values: &[Option<&[u8]>],
    shape: &Shape,
    formats: &[i16],
    dates: &DateSettings,
    opened: &[Reopened<'_>],
    out: &mut BytesMut,
) -> Result<(), Refusal> {
    if values.len() != shape.fields.len() && !shape.fields.is_empty() {
        // The plan is per described column: a row that does not match it cannot be told
        // apart value by value, so nothing of it goes on.
        let message = format!(
            "a row of the result has {} values where its description announced {}",
            values.len(),
            shape.fields.len()
        );
        warn!("{message}; the statement fails");
        return Err(Refusal::new("08P01", message));
    }
    // The count came from a frame's own 16-bit field.
    let mut row = DataRowWriter::begin(out, values.len() as i16);
    let mut failure = None;
    for (i, value) in values.iter().enumerate() {
        let plan = shape.fields.get(i).copied().unwrap_or(FieldPlan::Pass);
        let (FieldPlan::Open { sealed, view }, Some(stored)) = (plan, value) else {
            row.put(*value);
            continue;
        };
        let format = Format::from_code(formats.get(i).copied().unwrap_or(0));
        let crypto = protection.column(sealed.column);
        // The same stored bytes of the same column, already opened for pgseal's own filter.
        let known = (view != View::Ciphertext)
            .then(|| {
                opened.iter().find(|o| {
                    o.column == sealed.column
                        && o.storage == sealed.storage
                        && o.format == format
                        && o.stored == *stored
                })
            })
            .flatten();
        let put = match known {
            Some(known) => {
                row.put_with(|out| crypto.render_into(&view, known.canonical, format, dates, out))
            }
            None => row.put_with(|out| {
                crypto.read_into(stored, format, sealed.storage, &view, dates, out)
            }),
        };
        if let Err(error) = put {
            failure = Some((crypto, error));
            break;
        }
    }
    match failure {
        None => row.finish().map_err(|RowTooLarge| {
            warn!("a row is over 2 GiB once its sealed values are read; the statement fails");
            Refusal::new(
                "54000",
                "a row of the result is over 2 GiB once its sealed values are read",
            )
        }),
        Some((crypto, error)) => {
            // Dropping the unfinished row takes it back out of `out`, with whatever values
            // were already opened into it.
            drop(row);
            warn!(column = %crypto.name, error = %error, "a sealed value could not be opened; the statement fails");
            protection.metrics.open_failures.with(&[&crypto.name]).inc();
            Err(Refusal::new(error.sqlstate(), error.to_string()))
        }
    }
}

/// The SQLSTATE of an ErrorResponse frame.
fn error_code(frame: &[u8]) -> Option<String> {
    frame
        .get(5..)?
        .split(|b| *b == 0)
        .find(|field| field.first() == Some(&b'C'))
        .map(|field| String::from_utf8_lossy(&field[1..]).into_owned())
}

/// Whether a CommandComplete tag is DDL that can change table OIDs or columns.
fn is_ddl(tag: &[u8]) -> bool {
    [
        &b"CREATE TABLE"[..],
        b"ALTER TABLE",
        b"DROP TABLE",
        b"CREATE SCHEMA",
        b"DROP SCHEMA",
        b"ALTER SCHEMA",
    ]
    .iter()
    .any(|prefix| tag.starts_with(prefix))
}

/// The size PostgreSQL reports for a type (`typlen`): fixed for scalars, -1 otherwise.
fn type_size(ty: &PlainType) -> i16 {
    match ty {
        PlainType::Bool => 1,
        PlainType::Int2 => 2,
        PlainType::Int4 | PlainType::Float4 | PlainType::Date => 4,
        PlainType::Int8 | PlainType::Float8 | PlainType::Timestamp | PlainType::Timestamptz => 8,
        PlainType::Uuid => 16,
        _ => -1,
    }
}

impl Filter for Backend {
    fn inspects(&mut self, tag: u8) -> bool {
        if tag != b'D' {
            self.front_passes_rows = false;
        }
        if self.skip_to_ready {
            return true;
        }
        match tag {
            b'D' => {
                self.paged_opening()
                    || self.suppressing.is_some()
                    || self.ledger.active()
                    || self.current.as_ref().is_some_and(|c| {
                        c.shape.needs_work() || c.shape.sealed || c.evaluating.is_some()
                    })
                    || self.front_reads_rows()
            }
            b'd' => self.copy_out.is_some() || self.suppressing.is_some() || self.front_counts(),
            // A COPY ended by pgseal reports its error in place of CopyDone.
            b'c' => self.suppressing.is_some(),
            b'1' | b'2' | b'3' | b't' | b'T' | b'n' | b'C' | b'I' | b's' | b'E' | b'Z' | b'H'
            | b'S' => true,
            _ => false,
        }
    }

    fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        self.unchanged = false;
        let flow = self.handle(frame, out)?;
        Ok(super::unchanged_flow(
            flow,
            std::mem::take(&mut self.unchanged),
        ))
    }
}

impl Backend {
    /// [`Filter::on_frame`]: what happens to one frame from the server.
    fn handle(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        let tag = frame[0];
        if self.cycle.is_none() {
            // Between two ReadyForQuery: one lock for the policies in force and the start of
            // the cycle.
            let mut state = lock(&self.state);
            // The protection the frontend moved the session to after a reload. The frontend
            // moves only while nothing is in flight, so the responses from here on are to
            // statements it planned under the new one.
            if tag != b'D' && state.protection.0 != self.generation {
                self.generation = state.protection.0;
                self.protection = Arc::clone(&state.protection.1);
                self.class = self.protection.policy.class_of(&self.session.role);
            }
            if matches!(
                tag,
                b'1' | b'2' | b'3' | b't' | b'T' | b'n' | b'C' | b'I' | b's' | b'E' | b'H' | b'D'
            ) && !is_catalog(state.expected.front())
            {
                let implicit = self.transaction == b'I';
                if implicit {
                    state.end_users.on_begin();
                }
                self.cycle = Some((implicit, false));
            }
        }
        if tag == b'S' {
            // Settings the server reports reach pgseal and the client even while the rest of a
            // failed statement is skipped: a SET before it in the same Query did take effect.
            self.parameter_status(frame, out);
            return Ok(Flow::Done);
        }
        if self.skip_to_ready && tag != b'Z' {
            if tag == b'E' {
                // The server failed the rest (the cancel, or the poisoned group): its implicit
                // transaction is rolled back.
                if let Some(cycle) = self.cycle.as_mut() {
                    cycle.1 = true;
                }
            }
            return Ok(Flow::Done);
        }
        match tag {
            b'1' | b'2' | b'3' => {
                let mut state = lock(&self.state);
                if let Some(expect) = state.expected.pop_front() {
                    state.confirm(expect);
                }
                drop(state);
                self.unchanged = true;
            }
            b't' => self.parameter_description(frame, out)?,
            b'T' => self.row_description(frame, out)?,
            b'n' => {
                let mut state = lock(&self.state);
                match state.expected.front() {
                    Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_)) => {
                        state.expected.pop_front();
                        out.extend_from_slice(frame);
                    }
                    // pgseal's own Describe: the portal returns no rows.
                    Some(Expect::ShapePortal(_)) => {
                        state.expected.pop_front();
                    }
                    _ => out.extend_from_slice(frame),
                }
            }
            b'D' if self.paged_opening() => {
                // The opening's own row: the client's `jit`, kept to set it back.
                let mut values = Vec::new();
                extended::decode_data_row(frame, &mut values).map_err(Self::malformed)?;
                let jit = values
                    .first()
                    .copied()
                    .flatten()
                    .and_then(paging::jit_setting);
                if let Some(paged) = self.paged.as_mut() {
                    paged.jit_before = jit;
                }
            }
            b'D' => {
                self.current_for_execute();
                return self.data_row(frame, out);
            }
            b'C' if self.complete_plain(frame) => self.unchanged = true,
            b'C' | b's' if self.paged_front() => self.paged_complete(frame, out)?,
            b'C' | b'I' | b's' => {
                self.current_for_execute();
                if let Some(flow) = self.send_sorted(out) {
                    return Ok(flow);
                }
                match self.evaluated_tag(frame) {
                    Some(tag) => self.end_of_result(&tag, false, out)?,
                    None => self.end_of_result(frame, true, out)?,
                }
            }
            b'E' => self.error(frame, out)?,
            b'Z' => {
                // A cancel pgseal sent must reach the server before the client can send more,
                // or it could cancel the client's next statement.
                let paging = {
                    let mut state = lock(&self.state);
                    if state.cancel_pending() {
                        return Ok(Flow::Hold(std::time::Duration::from_millis(2)));
                    }
                    self.paged.is_some() || state.paging.is_some()
                };
                if paging && self.paged_step(frame) {
                    return Ok(Flow::Done);
                }
                self.ready(frame);
            }
            b'H' => self.copy_out_response(frame, out),
            b'c' if self.suppressing.is_some() => {}
            b'd' => {
                if self.suppressing.is_some() {
                    return Ok(Flow::Done);
                }
                if let Some(flow) = self.charge() {
                    return Ok(flow);
                }
                match self.copy_out.as_mut() {
                    Some(copy) => {
                        if let Err(error) = copy.data(extended::copy_data(frame), out) {
                            warn!(error = %error, "a sealed value in COPY TO could not be opened; the COPY fails");
                            self.fail_statement(Refusal::new(error.sqlstate(), error.to_string()));
                        }
                    }
                    None => out.extend_from_slice(frame),
                }
            }
            _ => out.extend_from_slice(frame),
        }
        Ok(Flow::Done)
    }
}

impl Backend {
    /// Whether the response in front is to a Query read in pages: its state starts with
    /// the first response.
    fn paged_front(&mut self) -> bool {
        if self.paged.is_some() {
            return true;
        }
        let state = lock(&self.state);
        Self::paged_front_in(&mut self.paged, &state)
    }

    /// [`Backend::paged_front`] with the shared state locked (`paged` is the backend's).
    fn paged_front_in(paged: &mut Option<PagedRead>, state: &Shared) -> bool {
        if paged.is_some() {
            return true;
        }
        let Some(paging) = state.paging.as_ref() else {
            return false;
        };
        let (plan, portal) = (paging.plan, paging.portal.clone());
        match (state.expected.front(), &portal) {
            (Some(Expect::Query { .. }), None)
            | (Some(Expect::Execute { paged: true, .. }), Some(_)) => {}
            _ => return false,
        }
        *paged = Some(PagedRead::new(plan, portal));
        true
    }

    /// Whether a paged read's opening is answering (its `SELECT current_setting('jit')`).
    fn paged_opening(&self) -> bool {
        self.paged
            .as_ref()
            .is_some_and(|p| p.portal.is_none() && p.phase == Phase::Opening)
    }

    /// A CommandComplete of a paged read: pgseal's steps are the server's alone; the end of a
    /// FETCH decides the next step, and gives the client its completion once the page is full
    /// or the server has no row left.
    fn paged_complete(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        if self.cancelled.load(std::sync::atomic::Ordering::Acquire) {
            // A cancel that reached the server between two pages cancelled nothing there:
            // the read ends here, as the server would have ended it.
            self.fail_statement(Refusal::new(
                "57014",
                "canceling statement due to user request",
            ));
        }
        let Some(paged) = self.paged.as_mut() else {
            return Ok(());
        };
        if let Some(portal) = paged.portal.clone() {
            return self.paged_execute_end(frame, &portal, out);
        }
        let tag = extended::decode_command_complete(frame).map_err(Self::malformed)?;
        let Some(paged) = self.paged.as_mut() else {
            return Ok(());
        };
        match paged.phase {
            Phase::Opening => {
                if tag.starts_with(b"DECLARE") {
                    paged.phase = Phase::Reading;
                }
            }
            Phase::Reading => {
                if let Some(refusal) = self.suppressing.take() {
                    // pgseal failed the statement: the server fails too, with pgseal's error.
                    paged.then = Some((plan::poison(&refusal, None), Phase::Failing));
                    if let Some(Expect::Query { refused, .. }) =
                        lock(&self.state).expected.front_mut()
                    {
                        *refused = Some(Box::new(refusal));
                    }
                    self.current = None;
                    return Ok(());
                }
                let full = self
                    .current
                    .as_ref()
                    .and_then(|c| c.evaluating.as_ref())
                    .is_none_or(|e| e.run.exhausted());
                let given = paging::fetched(tag).unwrap_or(0);
                if !full && given >= paged.asked {
                    paged.asked = next_page(paged.asked, self.current.as_ref());
                    paged.then = Some((paging::fetch(paged.asked), Phase::Reading));
                    return Ok(());
                }
                paged.then = Some((
                    paging::closing(paged.wrapped, paged.jit_before),
                    Phase::Finishing,
                ));
                match self.evaluated_tag(frame) {
                    Some(tag) => self.end_of_result(&tag, false, out)?,
                    None => self.end_of_result(frame, true, out)?,
                }
            }
            // The steps after the client's rows: CLOSE, COMMIT, ROLLBACK.
            Phase::Finishing | Phase::Failing | Phase::RollingBack => {}
        }
        Ok(())
    }

    /// The end of one Execute of a portal read in pages: a PortalSuspended asks for the next
    /// page while the client's is not full; otherwise (or at the portal's CommandComplete) the
    /// client gets its completion and its held Execute goes.
    fn paged_execute_end(
        &mut self,
        frame: &[u8],
        portal: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SessionError> {
        self.current_for_execute();
        let full = self
            .current
            .as_ref()
            .and_then(|c| c.evaluating.as_ref())
            .is_none_or(|e| e.run.exhausted());
        if frame[0] == b's' && !full && self.suppressing.is_none() {
            if let Some(paged) = self.paged.as_mut() {
                paged.asked = next_page(paged.asked, self.current.as_ref());
                let next = paging::execute(portal, paged.asked);
                let mut state = lock(&self.state);
                if let Some(paging) = state.paging.as_mut() {
                    paging.next = Next::Send(next);
                }
                state.wake_frontend.notify_one();
            }
            return Ok(());
        }
        // The client asked for every row: its completion, whatever the server's portal has
        // left (pgseal's error in its place when pgseal failed the statement).
        let tag = match self.suppressing {
            Some(_) => None,
            None => self.evaluated_tag(b"C\0\0\0\x04"),
        };
        self.paged = None;
        // Without a tag of pgseal's, the statement failed: its error replaces this one.
        let tag = tag.unwrap_or_else(|| b"C\0\0\0\x0dSELECT 0\0".to_vec());
        let ended = self.end_of_result(&tag, false, out);
        lock(&self.state).end_paging();
        ended
    }

    /// A ReadyForQuery during a paged read: when another step follows, it is the server's
    /// alone and the frontend sends the step (true); otherwise the client's Query is done
    /// with, and the ReadyForQuery is the client's.
    fn paged_step(&mut self, frame: &[u8]) -> bool {
        // A read may end here before it began (an error at its first step).
        if !self.paged_front() {
            return false;
        }
        let Some(paged) = self.paged.as_mut() else {
            return false;
        };
        let status = extended::ready_status(frame).unwrap_or(b'E');
        let next = paged.after_ready(status);
        let mut state = lock(&self.state);
        match next {
            Some(frames) => {
                if let Some(paging) = state.paging.as_mut() {
                    paging.next = Next::Send(frames);
                }
                state.wake_frontend.notify_one();
                true
            }
            None => {
                self.paged = None;
                state.end_paging();
                false
            }
        }
    }

    /// The short path of a CommandComplete: the end of a read that needs nothing more of
    /// pgseal — a plain statement's Execute ([`Prepared::is_plain`]) under a current shape with
    /// no denied column, or a statement of a simple Query that pgseal neither evaluates, counts
    /// nor follows for cursors or the end user — while nothing is paged, paced or suppressed.
    /// Its response is done with under one lock, and the frame goes on as it came: what the
    /// full path ([`Backend::end_of_result`]) would do for it. Otherwise does nothing and says
    /// no.
    fn complete_plain(&mut self, frame: &[u8]) -> bool {
        if self.paged.is_some()
            || self.suppressing.is_some()
            || self.ledger.active()
            || self.copy_out.is_some()
            || self
                .current
                .as_ref()
                .is_some_and(|c| c.evaluating.is_some())
        {
            return false;
        }
        // A read's tag: nothing it says changes settings, the catalog or a cursor.
        if !extended::decode_command_complete(frame).is_ok_and(|tag| tag.starts_with(b"SELECT ")) {
            return false;
        }
        let mut state = lock(&self.state);
        if state.paging.is_some() {
            return false;
        }
        match state.expected.front_mut() {
            Some(Expect::Execute {
                portal,
                count: None,
                cursor: None,
                paged: false,
                ..
            }) if portal.statement.runs_plain
                && portal.shape_with(|shape| {
                    shape.is_some_and(|shape| {
                        shape.generation == self.generation && shape.denied.is_none()
                    })
                }) =>
            {
                state.expected.pop_front();
            }
            // The Query stays in front until its ReadyForQuery; this statement's event, none
            // that matters, is done with.
            Some(Expect::Query {
                count: None,
                evaluation: None,
                cursor: None,
                refused: None,
                events,
                ..
            }) if matches!(events.front(), None | Some(TxEvent::None)) => {
                events.pop_front();
            }
            _ => return false,
        }
        drop(state);
        self.current = None;
        self.completing = false;
        self.completed_since_ready = true;
        true
    }

    /// Whether the response in front counts rows against a budget.
    fn front_counts(&self) -> bool {
        matches!(
            lock(&self.state).expected.front(),
            Some(Expect::Query { count: Some(_), .. } | Expect::Execute { count: Some(_), .. })
        )
    }

    /// Whether pgseal reads the next DataRow for what the response it belongs to expects
    /// (one lock per run of rows): its rows are counted, it is pgseal's catalog, or
    /// it is an Execute's whose shape is not current yet.
    fn front_reads_rows(&mut self) -> bool {
        if self.front_passes_rows {
            return false;
        }
        let reads = match lock(&self.state).expected.front() {
            Some(Expect::CatalogLoad { .. })
            | Some(Expect::Query { count: Some(_), .. } | Expect::Execute { count: Some(_), .. }) => {
                true
            }
            Some(Expect::Execute { portal, .. }) => {
                self.current.is_none() && Self::portal_needs_work(portal)
            }
            _ => false,
        };
        self.front_passes_rows = !reads;
        reads
    }

    /// Whether an Execute's rows need pgseal: evaluated, or with columns to open or count.
    fn portal_needs_work(portal: &Portal) -> bool {
        portal.statement.evaluation.is_some()
            || portal.statement.fetches.is_some()
            || portal.shape_with(|shape| shape.is_some_and(|s| s.needs_work() || s.sealed))
    }

    fn parameter_description(
        &mut self,
        frame: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SessionError> {
        let mut oids = extended::decode_parameter_description(frame).map_err(Self::malformed)?;
        let statement = match lock(&self.state).expected.front() {
            Some(Expect::DescribeStatement(statement)) => Some(Arc::clone(statement)),
            _ => None,
        };
        if let Some(statement) = statement {
            // pgseal's own parameters (search probes) are not the client's to see.
            if let Some(first) = statement.probes.first() {
                oids.truncate(usize::from(first.param).saturating_sub(1));
            }
            // As PostgreSQL does: a type the client declared in Parse is echoed as declared
            // (PgJDBC declares varchar and fails on any other answer); an unspecified one gets
            // the column's declared plaintext type, never its storage type.
            for (slot, (oid, seal)) in oids.iter_mut().zip(&statement.params).enumerate() {
                if let Some(seal) = seal {
                    let plain = &self.protection.column(seal.column).plain_type;
                    *oid = match statement.client_types.get(slot).copied() {
                        Some(declared) if declared != 0 => declared,
                        _ if seal.each => plain.array_oid(),
                        _ => plain.oid(),
                    };
                }
            }
        }
        extended::put_parameter_description(out, &oids);
        Ok(())
    }

    fn copy_out_response(&mut self, frame: &[u8], out: &mut BytesMut) {
        self.copy_out = None;
        let plan = match lock(&self.state).expected.front() {
            Some(Expect::Query { copy, .. }) => copy.clone(),
            Some(Expect::Execute { portal, .. }) => portal.statement.copy.clone(),
            _ => None,
        };
        if let Some(plan) = plan {
            let catalog = Arc::clone(&lock(&self.state).catalog);
            self.copy_out = CopyOut::new(
                &self.protection,
                &catalog,
                self.class,
                &plan,
                Arc::clone(&self.dates),
            );
        }
        out.extend_from_slice(frame);
    }
}
