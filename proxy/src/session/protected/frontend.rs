//! The client → server side of a protected session: every statement is planned before it
//! leaves (Query, Parse), parameters bound for sealed columns are sealed at Bind, COPY rows
//! into sealed tables are sealed field by field, and each message's expected response is
//! queued for the other side. A refused message is replaced by one that fails at once on the
//! server, so the server's state after it is exactly that of a real error.

use std::sync::Arc;

use bytes::BytesMut;
use pgseal_policies::ClassId;

use super::accounting::{self, Counting, SessionInfo, StatementInfo};
use super::copy::CopyIn;
use super::cursors::{
    self, Command, CursorOp, Declaring, EvaluatedCursor, Fetching, Lookup, Motion,
};
use super::evaluated;
use super::inert;
use super::paging::{self, Next, PagePlan, Paging};
use super::params;
use super::plan::{self, BYTEA_ARRAY, Planned, TEXT_ARRAY};
use super::state::{
    Expect, Gate, Portal, Prepared, PreparedOrigin, Refusal, Shared, SharedState, lock,
};
use super::txevents::{self, TxEvent};
use crate::error::SessionError;
use crate::protect::Protection;
use crate::protect::catalog;
use crate::protect::column::Storage;
use crate::protect::set::{ForDatabase, InForce};
use crate::session::relay::{Filter, Flow};
use crate::wire::extended::{self, Bind, Parse};
use tracing::debug;

/// A simple Query's statement planned, with the account its rows are charged to and what it
/// does to the end user.
type AccountedQuery = (Planned, Option<Arc<Counting>>, Vec<TxEvent>);

/// A statement name no client can have prepared (it starts with a NUL-free control byte), for
/// poisoned Binds.
const NO_SUCH_STATEMENT: &[u8] = b"\x01pgseal refused";

/// The client → server filter of a protected session.
pub struct Frontend {
    protection: Arc<Protection>,
    /// The policies in force, which a reload replaces.
    in_force: Arc<InForce>,
    /// The generation of the policies `protection` comes from.
    generation: u64,
    state: SharedState,
    class: ClassId,
    role: String,
    database: String,
    session: Arc<SessionInfo>,
    copy_in: Option<CopyIn>,
    /// Cursors DECLAREd on this session, by name, with what their query touches: a FETCH
    /// names only the cursor, yet its rows are the query's.
    cursors: std::collections::HashMap<String, Arc<StatementInfo>>,
    /// The role's count of statements (looked up once: a lookup allocates).
    statements: crate::admin::Counter,
    /// Where a Query's shape is written ([`inert::shape`]), kept for the next one.
    shape_buf: Vec<u8>,
    /// The session's copies of the remembered shapes it has used.
    inert_shapes: inert::SessionShapes,
    /// Set while handling a frame that goes on as the client sent it (`Flow::Unchanged`: the
    /// relay forwards it without a copy).
    unchanged: bool,
}

impl Frontend {
    /// The filter for a session of `role` on `database`.
    pub fn new(
        protection: Arc<Protection>,
        in_force: Arc<InForce>,
        state: SharedState,
        session: Arc<SessionInfo>,
    ) -> Self {
        let class = protection.policy.class_of(&session.role);
        let generation = lock(&state).protection.0;
        let statements = protection.metrics.statements.with(&[&session.role]);
        Frontend {
            statements,
            protection,
            in_force,
            generation,
            state,
            class,
            role: session.role.clone(),
            database: session.database.clone(),
            session,
            copy_in: None,
            cursors: std::collections::HashMap::new(),
            shape_buf: Vec::new(),
            inert_shapes: Default::default(),
            unchanged: false,
        }
    }

    /// The statement record a text's rows are charged to: a FETCH or MOVE charges its
    /// cursor's query (an unknown cursor — declared in a function, say — counts as sealed);
    /// a DECLARE records its query for the FETCHes to come.
    fn through_cursors(&mut self, sql: &[u8], info: Arc<StatementInfo>) -> Arc<StatementInfo> {
        let Ok(text) = std::str::from_utf8(sql) else {
            return info;
        };
        let spans: Vec<std::ops::Range<usize>> = match self.protection.analyze(text).as_ref() {
            Ok(analysis) => analysis.statements.iter().map(|s| s.span.clone()).collect(),
            Err(_) => std::iter::once(0..text.len()).collect(),
        };
        let mut charged = Arc::clone(&info);
        for span in spans {
            let statement = text.get(span).unwrap_or(text);
            let words = txevents::words(statement);
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            match words.first().copied() {
                Some("declare") => {
                    if let Some(name) = words.get(1) {
                        self.cursors.insert((*name).to_string(), Arc::clone(&info));
                    }
                }
                Some("fetch" | "move") => {
                    let cursor = words
                        .last()
                        .and_then(|name| self.cursors.get(*name))
                        .cloned();
                    charged = match cursor {
                        // The cursor's query, charged to the FETCH's own end user.
                        Some(cursor) if cursor.sealed => Arc::new(StatementInfo {
                            sealed: true,
                            fingerprint: cursor.fingerprint.clone(),
                            tables: cursor.tables.clone(),
                            columns: cursor.columns.clone(),
                            end_user: info.end_user.clone(),
                        }),
                        Some(_) => charged,
                        None => Arc::new(StatementInfo {
                            sealed: true,
                            fingerprint: crate::audit::Fingerprint::of(statement),
                            tables: Vec::new(),
                            columns: Vec::new(),
                            end_user: info.end_user.clone(),
                        }),
                    };
                }
                _ => {}
            }
        }
        charged
    }

    /// The cursor statements of a text (FETCH, MOVE, CLOSE), read only when the session has
    /// evaluated cursors and one of those words appears in it.
    fn cursor_commands(&self, sql: &[u8]) -> Vec<Command> {
        if lock(&self.state).cursors.is_empty() {
            return Vec::new();
        }
        self.read_cursor_commands(sql)
    }

    /// The cursor statements of a text, whatever the registry holds.
    fn read_cursor_commands(&self, sql: &[u8]) -> Vec<Command> {
        let Ok(text) = std::str::from_utf8(sql) else {
            return Vec::new();
        };
        let mentions = |word: &[u8]| {
            sql.windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word))
        };
        if !mentions(b"fetch") && !mentions(b"move") && !mentions(b"close") {
            return Vec::new();
        }
        cursors::statements(text)
            .unwrap_or_default()
            .iter()
            .map(|tokens| cursors::command(tokens))
            .collect()
    }

    /// A FETCH or MOVE of a cursor pgseal evaluates among a text's statements: the FETCH to
    /// send, or why it is refused. `None` when the text reads no such cursor.
    fn evaluated_fetch(&self, commands: &[Command]) -> Option<Result<Fetching, Refusal>> {
        let state = lock(&self.state);
        for command in commands {
            let Command::Fetch {
                is_move,
                name,
                motion,
            } = command
            else {
                continue;
            };
            let cursor = match state.cursors.lookup(name) {
                Lookup::Streamed => continue,
                Lookup::Refused(refusal) => return Some(Err(refusal)),
                Lookup::Evaluated(cursor) => cursor,
            };
            let refused = |what: &str| {
                Some(Err(Refusal::new(
                    "0A000",
                    format!(
                        "pgseal evaluates the query of cursor {name} itself (it filters or sorts on sealed columns) and reads it forward only: {what} is not supported on it"
                    ),
                )))
            };
            if commands.len() > 1 {
                return refused("a FETCH sent with other statements in one query string");
            }
            if *is_move {
                return refused("MOVE");
            }
            let limit = match motion {
                Motion::Forward(n) => u32::try_from(*n).unwrap_or(u32::MAX),
                Motion::All => 0,
                Motion::Other(what) => return refused(what),
            };
            return Some(Ok(Fetching {
                name: name.clone(),
                limit,
                cursor,
            }));
        }
        None
    }

    /// The plan of a FETCH of an evaluated cursor: the server is sent `FETCH ALL FROM` it.
    fn plan_fetch(&self, sql: &[u8], fetching: Fetching) -> Result<Planned, Refusal> {
        let text = std::str::from_utf8(sql).unwrap_or_default();
        let end_user = crate::enduser::end_user_from_comment(text)
            .map_err(|e| Refusal::new("22023", format!("pgseal_user comment: {e}")))?;
        let statement = StatementInfo::new(
            &self.protection,
            self.class,
            text,
            Vec::new(),
            &[],
            &[],
            end_user,
        );
        let mut planned = Planned::empty(statement);
        planned.sql = Some(cursors::fetch_all_sql(&fetching.name));
        planned.read_only = true;
        planned.dates = lock(&self.state).input_dates();
        planned.fetches = Some(Arc::new(fetching));
        Ok(planned)
    }

    /// A simple Query's statement once planned, with what it does to the end user and the
    /// account its rows are charged to (a FETCH or MOVE charges its cursor's query).
    fn account_query(
        &mut self,
        sql: &[u8],
        planned: Result<Planned, Refusal>,
    ) -> Result<AccountedQuery, Refusal> {
        let mut planned = planned?;
        let events = self.track_end_user(sql)?;
        planned.statement = self.through_cursors(sql, Arc::clone(&planned.statement));
        let count = self.counting(&planned.statement)?;
        Ok((planned, count, events))
    }

    /// A simple Query's plan and account, for a text of this shape ([`inert::shape`]; `None`:
    /// it has none). A text whose shape is known to need nothing of pgseal is not planned
    /// again; any other is planned in full, and its shape remembered when it turns out to need
    /// nothing.
    fn plan_query_shaped(
        &mut self,
        sql: &[u8],
        shape: Option<&[u8]>,
    ) -> Result<AccountedQuery, Refusal> {
        if let Some(shape) = shape
            && let Some(planned) = self.known_inert(shape)
        {
            let count = self.counting(&planned.statement)?;
            return Ok((planned, count, Vec::new()));
        }
        let accounted = self.plan(sql, None);
        let accounted = self.account_query(sql, accounted);
        if let (Some(shape), Ok((planned, _, events))) = (shape, &accounted)
            && self.needs_nothing(sql, planned, events)
        {
            let catalog = Arc::clone(&lock(&self.state).catalog);
            let known = inert::Known {
                statement: Arc::clone(&planned.statement),
                read_only: planned.read_only,
            };
            self.protection
                .inert
                .remember(shape, self.class, &catalog, known);
        }
        accounted
    }

    /// The plan of a text whose shape is known to need nothing, when the session reads SQL as
    /// it was read then (standard strings) and its catalog is the one it was checked against.
    fn known_inert(&mut self, shape: &[u8]) -> Option<Planned> {
        let state = lock(&self.state);
        if !state.lexing.standard() {
            return None;
        }
        let known =
            self.inert_shapes
                .find(&self.protection.inert, shape, self.class, &state.catalog)?;
        let dates = state.input_dates();
        drop(state);
        let mut planned = Planned::empty_for(known.statement, dates);
        planned.read_only = known.read_only;
        Some(planned)
    }

    /// Whether a simple Query planned in full needs nothing of pgseal, so that texts of its
    /// shape may skip planning: plain statements (SELECT, INSERT, UPDATE, DELETE) touching no
    /// sealed table, forwarded unchanged, with no effect on the session's state (end user,
    /// dates, catalog, cursors, COPY) and no mention of pgseal (its settings).
    fn needs_nothing(&self, sql: &[u8], planned: &Planned, events: &[TxEvent]) -> bool {
        use crate::analyze::StatementKind;
        let Ok(text) = std::str::from_utf8(sql) else {
            return false;
        };
        let plain = match self.protection.analyze(text).as_ref() {
            Ok(analysis) => analysis.statements.iter().all(|statement| {
                matches!(
                    statement.kind,
                    StatementKind::Select
                        | StatementKind::Insert
                        | StatementKind::Update
                        | StatementKind::Delete
                ) && !statement.touches_sealed()
                    && statement.refusals.is_empty()
                    && statement.declared.is_none()
                    && statement.copy.is_none()
                    && !statement.changes_catalog
            }),
            Err(_) => false,
        };
        let statement = &planned.statement;
        plain
            && planned.sql.is_none()
            && planned.params.is_empty()
            && planned.copy.is_none()
            && !planned.changes_catalog
            && !planned.touches_sealed
            && !planned.copies_in
            && !planned.changes_dates
            && planned.evaluation.is_none()
            && planned.probes.is_empty()
            && planned.stored_literals.is_empty()
            && planned.declares.is_none()
            && planned.fetches.is_none()
            && !statement.sealed
            && statement.tables.is_empty()
            && statement.columns.is_empty()
            && statement.end_user.is_none()
            && events.iter().all(|event| matches!(event, TxEvent::None))
            && !sql.windows(6).any(|w| w.eq_ignore_ascii_case(b"pgseal"))
    }

    /// Sends a simple Query's FETCH of an evaluated cursor.
    fn send_fetch(&mut self, sql: &[u8], fetching: Fetching, out: &mut BytesMut) {
        let planned = self.plan_fetch(sql, fetching);
        let planned = self.account_query(sql, planned);
        match planned {
            Ok((planned, count, events)) => {
                let sql = planned.sql.unwrap_or_default();
                extended::put_query(out, sql.as_bytes());
                lock(&self.state).expected.push_back(Expect::Query {
                    copy: None,
                    count,
                    events: events.into(),
                    refused: None,
                    evaluation: None,
                    dates: planned.dates,
                    cursor: planned.fetches.map(CursorOp::Fetch),
                });
            }
            Err(refusal) => {
                extended::put_query(out, plan::poison(&refusal, Some(sql)).as_bytes());
                self.refuse_query(refusal, Some(sql));
            }
        }
    }

    /// A prepared FETCH or MOVE whose cursor is no longer the one it was planned for (closed
    /// and declared again, with or without pgseal's evaluation): its rows would be read with
    /// the wrong plan, so it is refused.
    fn stale_fetch(&self, statement: &Prepared) -> Option<Refusal> {
        let name = statement.reads_cursor.as_ref()?;
        let current = lock(&self.state).cursors.lookup(name);
        let same = match (&statement.fetches, &current) {
            (Some(fetching), Lookup::Evaluated(cursor)) => Arc::ptr_eq(cursor, &fetching.cursor),
            (None, Lookup::Streamed) => true,
            _ => false,
        };
        (!same).then(|| {
            Refusal::new(
                "0A000",
                format!(
                    "cursor {name} is not the one this prepared FETCH was planned for (closed or declared again since): prepare the FETCH again"
                ),
            )
        })
    }

    /// Drops the rows kept for the cursors a text closes (sent: it is planned and goes).
    fn close_cursors(&self, commands: &[Command]) {
        let mut state = lock(&self.state);
        for command in commands {
            if let Command::Close(name) = command {
                state.cursors.close(name.as_deref());
            }
        }
    }

    /// Records a DECLARE as it is sent: what the backend confirms or undoes.
    fn declare_sent(
        &self,
        declares: &Declaring,
        params: Vec<Option<String>>,
        literal_dates: &Arc<crate::protect::date_settings::DateSettings>,
        param_dates: &Arc<crate::protect::date_settings::DateSettings>,
    ) -> CursorOp {
        let cursor = declares.evaluation.as_ref().map(|evaluation| {
            Arc::new(EvaluatedCursor {
                evaluation: Arc::clone(evaluation),
                params,
                literal_dates: Arc::clone(literal_dates),
                param_dates: Arc::clone(param_dates),
                hold: declares.cursor.hold,
            })
        });
        let name = declares.cursor.name.clone();
        let mut state = lock(&self.state);
        // The server's portal of that name is the cursor now: what pgseal knew of an earlier
        // portal so named (closed by a transaction's end, which pgseal does not track) is stale.
        state
            .portals
            .retain(|portal| !cursors::same_portal_name(portal, name.as_bytes()));
        let id = state.cursors.declare_sent(&name, cursor);
        CursorOp::Declare { name, id }
    }

    fn malformed(e: extended::Malformed) -> SessionError {
        SessionError::ClientMessage(e.to_string())
    }

    /// Sends pgseal's catalog query first when the catalog is stale and the server is idle.
    fn refresh_catalog(&self, out: &mut BytesMut) {
        self.refresh_catalog_in(&mut lock(&self.state), out);
    }

    /// [`Frontend::refresh_catalog`] with the shared state already locked.
    fn refresh_catalog_in(&self, state: &mut Shared, out: &mut BytesMut) {
        if catalog_refresh_due(state) {
            self.send_catalog_query(state, out);
        }
    }

    /// Sends pgseal's catalog query, once [`catalog_refresh_due`] said it may go now.
    fn send_catalog_query(&self, state: &mut Shared, out: &mut BytesMut) {
        let generation = self.protection.catalogs.next_generation();
        let with_unaccent = !self
            .protection
            .catalogs
            .get(&self.database)
            .unaccent_loaded();
        extended::put_query(
            out,
            catalog::query(&self.protection.policy, with_unaccent).as_bytes(),
        );
        state.expected.push_back(Expect::CatalogLoad {
            generation,
            protection: Arc::clone(&self.protection),
        });
        state.catalog_stale = false;
    }

    /// Whether a statement may be planned now. It needs the database's catalog loaded at least
    /// once: planned without it, pgseal would not know which tables are sealed, nor the views
    /// over them. So the statement waits while the catalog query is on its way (sent here when
    /// it can be), and is refused when the query failed (one attempt per statement, never a
    /// loop) or cannot be sent (inside an open extended-protocol group). A statement the server
    /// will not run anyway (it skips to Sync, or its transaction is aborted) goes on.
    fn catalog_readiness(&self, state: &mut Shared, frame: &[u8], out: &mut BytesMut) -> Readiness {
        let failed = std::mem::take(&mut state.catalog_load_failed);
        if state.server_skipping || state.transaction == b'E' {
            return Readiness::Ready;
        }
        if failed {
            // One attempt per statement: the next one asks again.
            if state.catalog.generation != 0 {
                // The old catalog serves this statement; a Query or Parse still asks for
                // a fresh one ahead of it, so that what follows it waits for that one.
                if matches!(frame[0], b'Q' | b'P') {
                    self.refresh_catalog_in(state, out);
                }
                return Readiness::Ready;
            }
            return Readiness::Refused(Refusal::new(
                "55000",
                "pgseal could not load this database's catalog (its catalog query failed; see pgseal's log): statements are refused until it loads, retry",
            ));
        }
        // The frame is read only when a refresh is due: most statements find the catalog current.
        if catalog_refresh_due(state) && query_spares(frame) {
            self.send_catalog_query(state, out);
        }
        // A catalog query is only ever sent with nothing else in flight, so one in flight is the
        // first response expected.
        if matches!(state.expected.front(), Some(Expect::CatalogLoad { .. })) {
            // A new catalog is on its way (first, after a reload, or after DDL made the old one
            // stale): the statement is planned with it.
            return Readiness::Wait;
        }
        if state.catalog.generation != 0 {
            return Readiness::Ready;
        }
        if !state.expected.is_empty() {
            // The query goes once what is in flight has been answered.
            return Readiness::Wait;
        }
        Readiness::Refused(Refusal::new(
            "55000",
            "pgseal has not loaded this database's catalog yet and cannot now (inside an open extended-protocol group, or before the Bind of an unnamed statement): send Sync, or Parse again, and retry",
        ))
    }

    /// Refuses a Query, Parse, Bind, Describe or fast-path call before it is planned: the
    /// server gets a message that fails at once, and the client pgseal's error in its place.
    fn refuse_message(
        &mut self,
        frame: &[u8],
        refusal: Refusal,
        out: &mut BytesMut,
    ) -> Result<(), SessionError> {
        match frame[0] {
            b'Q' => {
                let sql = extended::decode_query(frame).map_err(Self::malformed)?;
                extended::put_query(out, plan::poison(&refusal, Some(sql)).as_bytes());
                self.refuse_query(refusal, Some(sql));
            }
            b'P' => {
                let parse = Parse::decode(frame).map_err(Self::malformed)?;
                self.poison_parse(&parse, refusal, out);
            }
            b'B' => {
                let bind = Bind::decode(frame).map_err(Self::malformed)?;
                extended::put_bind(out, bind.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
                self.refuse(refusal, None);
            }
            b'D' => {
                poison_describe(out);
                self.refuse(refusal, None);
            }
            _ => {
                extended::put_query(out, plan::poison(&refusal, None).as_bytes());
                self.refuse_query(refusal, None);
            }
        }
        Ok(())
    }

    /// Plans a statement text: a Query's (`param_floor` `None`) or a Parse's, whose search
    /// probes become pgseal's own parameters after `param_floor`, the number of parameter types
    /// the client declared.
    fn plan(&self, sql: &[u8], param_floor: Option<u16>) -> Result<Planned, Refusal> {
        self.plan_in(sql, param_floor, None)
    }

    /// [`Frontend::plan`], with the statement's literals read in `dates` rather than in the
    /// session's settings now (a statement prepared earlier, planned again after a reload:
    /// PostgreSQL read its literals at Parse).
    fn plan_in(
        &self,
        sql: &[u8],
        param_floor: Option<u16>,
        dates: Option<Arc<crate::protect::date_settings::DateSettings>>,
    ) -> Result<Planned, Refusal> {
        let Ok(text) = std::str::from_utf8(sql) else {
            return Err(Refusal::new(
                "22021",
                "pgseal needs statements in UTF-8 (client_encoding UTF8)",
            ));
        };
        let changes_dates = plan::may_change_dates(text);
        let (catalog, lexing, dates) = {
            let mut state = lock(&self.state);
            // Set before planning: the statement's own values are read as unknown too.
            state.dates_changing |= changes_dates;
            (
                Arc::clone(&state.catalog),
                state.lexing,
                dates.unwrap_or_else(|| state.input_dates()),
            )
        };
        if !lexing.standard() && !plan::only_settings(text) {
            return Err(Refusal::new(
                "0A000",
                "pgseal reads SQL as PostgreSQL does only with standard_conforming_strings = on and client_encoding = UTF8; restore them (SET/RESET) before anything else",
            ));
        }
        let mut planned = plan::plan(
            &self.protection,
            &catalog,
            self.class,
            &self.role,
            text,
            param_floor,
            &dates,
        )?;
        planned.changes_dates = changes_dates;
        planned.dates = dates;
        if planned.changes_catalog {
            lock(&self.state).catalog_stale = true;
            self.protection.catalogs.invalidate(&self.database);
        }
        Ok(planned)
    }

    /// Queues pgseal's error for a poisoned extended-protocol message, counts it, and records
    /// it in the audit trail when the statement named sealed data.
    fn refuse(&self, refusal: Refusal, sql: Option<&[u8]>) {
        self.record_refusal(&refusal, sql);
        lock(&self.state)
            .expected
            .push_back(Expect::Refused(refusal));
    }

    /// Queues pgseal's error for a poisoned simple Query (or fast-path call), which the server
    /// answers with an error and ReadyForQuery — or skips, inside a failed extended group.
    fn refuse_query(&self, refusal: Refusal, sql: Option<&[u8]>) {
        self.record_refusal(&refusal, sql);
        lock(&self.state).expected.push_back(Expect::Query {
            copy: None,
            count: None,
            events: Default::default(),
            refused: Some(Box::new(refusal)),
            evaluation: None,
            dates: Arc::default(),
            cursor: None,
        });
    }

    /// Counts a refusal, and records it in the audit trail when the statement named sealed
    /// data (a refused attempt is worth knowing of).
    fn record_refusal(&self, refusal: &Refusal, sql: Option<&[u8]>) {
        let metrics = &self.protection.metrics;
        metrics
            .statements_refused
            .with(&[&self.role, refusal.sqlstate])
            .inc();
        metrics.refusals.with(&[&self.role, refusal.reason()]).inc();
        // Refusal messages name columns, tables and operators, never values; the fingerprint
        // has its literals replaced.
        let fingerprint = sql
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(crate::audit::Fingerprint::of);
        tracing::warn!(
            role = %self.role,
            database = %self.database,
            sqlstate = refusal.sqlstate,
            reason = refusal.reason(),
            fingerprint = fingerprint.as_ref().map_or("-", |f| f.id.as_str()),
            statement = fingerprint.as_ref().map_or("-", |f| f.text.as_str()),
            "pgseal refused a statement: {}",
            refusal.message
        );
        if let Some(sql) = sql.and_then(|s| std::str::from_utf8(s).ok())
            && let Some(info) = self.refused_info(sql)
        {
            let end_user = info.end_user.clone().or_else(|| {
                lock(&self.state)
                    .end_users_sent
                    .current()
                    .map(str::to_string)
            });
            let counting = Counting {
                statement: Arc::new(info),
                end_user,
                started: std::time::Instant::now(),
            };
            let budget = crate::audit::AuditBudget {
                decision: "refused",
                ..Default::default()
            };
            accounting::record(
                &self.protection,
                &self.session,
                &counting.statement,
                counting.end_user.clone(),
                (0, None),
                budget,
                Some(refusal.sqlstate),
            );
        }
    }

    /// What a refused statement touched, from its analysis (or its sealed-table scan).
    fn refused_info(&self, sql: &str) -> Option<StatementInfo> {
        let (tables, reads, writes) = match self.protection.analyze(sql).as_ref() {
            Ok(analysis) => {
                let mut tables = Vec::new();
                let (mut reads, mut writes) = (Vec::new(), Vec::new());
                for statement in &analysis.statements {
                    tables.extend(
                        statement
                            .sealed_tables
                            .iter()
                            .map(|t| format!("{}.{}", t.schema, t.table)),
                    );
                    reads.extend_from_slice(&statement.reads);
                    writes.extend_from_slice(&statement.writes);
                }
                (tables, reads, writes)
            }
            Err(crate::analyze::AnalyzeError::Unparseable { sealed_tables, .. }) => (
                sealed_tables
                    .iter()
                    .map(|t| format!("{}.{}", t.schema, t.table))
                    .collect(),
                Vec::new(),
                Vec::new(),
            ),
        };
        if tables.is_empty() && reads.is_empty() && writes.is_empty() {
            return None;
        }
        let end_user = crate::enduser::end_user_from_comment(sql).ok().flatten();
        Some(StatementInfo::new(
            &self.protection,
            self.class,
            sql,
            tables,
            &reads,
            &writes,
            end_user,
        ))
    }

    /// The account and record of one execution, or the refusal when the class requires an end
    /// user and none is declared.
    fn counting(&self, info: &Arc<StatementInfo>) -> Result<Option<Arc<Counting>>, Refusal> {
        let end_user = {
            let state = lock(&self.state);
            state
                .end_users_sent
                .for_statement(info.end_user.as_deref())
                .map(str::to_string)
        };
        let budgets = &self.protection.budgets;
        if info.sealed
            && let Err(reason) = budgets
                .account(&self.role, end_user.as_deref())
                .check_end_user()
        {
            return Err(Refusal {
                sqlstate: reason.sqlstate(),
                message: reason.message(),
                hint: reason.hint(),
            });
        }
        self.statements.inc();
        if !info.sealed && !budgets.counts_unsealed(&self.role, end_user.as_deref()) {
            return Ok(None);
        }
        Ok(Some(Arc::new(Counting {
            statement: Arc::clone(info),
            end_user,
            started: std::time::Instant::now(),
        })))
    }

    /// The text's events, applied at once to the speculative end-user state (the confirmed
    /// one follows the server's answers, in the backend).
    fn track_end_user(&self, sql: &[u8]) -> Result<Vec<TxEvent>, Refusal> {
        let Ok(text) = std::str::from_utf8(sql) else {
            return Ok(Vec::new());
        };
        crate::enduser::end_user_from_comment(text)
            .map_err(|e| Refusal::new("22023", e.to_string()))?;
        let events = txevents::events(&self.protection, text);
        let mut state = lock(&self.state);
        for event in &events {
            txevents::apply(&mut state.end_users_sent, event, b"COMMIT");
        }
        Ok(events)
    }

    fn query(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let sql = extended::decode_query(frame).map_err(Self::malformed)?;
        let mut buf = std::mem::take(&mut self.shape_buf);
        let shape = inert::shape(sql, &mut buf);
        if !shape.is_some_and(|shape| self.query_inert(shape)) {
            self.query_planned(sql, shape, out);
        }
        self.shape_buf = buf;
        Ok(())
    }

    /// [`Frontend::query`]'s short path: a text whose shape is known to need nothing of
    /// pgseal ([`Frontend::known_inert`]), while no SQL cursor is recorded and no budget counts
    /// its rows, is queued under one lock and goes on as it came — what the full path does for
    /// it, without building its plan. Otherwise does nothing and says no: the full path runs.
    fn query_inert(&mut self, shape: &[u8]) -> bool {
        let mut state = lock(&self.state);
        if !state.lexing.standard() || !state.cursors.is_empty() {
            return false;
        }
        let Some(known) =
            self.inert_shapes
                .find(&self.protection.inert, shape, self.class, &state.catalog)
        else {
            return false;
        };
        let end_user = state
            .end_users_sent
            .for_statement(known.statement.end_user.as_deref());
        if known.statement.sealed
            || self
                .protection
                .budgets
                .counts_unsealed(&self.role, end_user)
        {
            return false;
        }
        let dates = state.input_dates();
        state.expected.push_back(Expect::Query {
            copy: None,
            count: None,
            events: Default::default(),
            refused: None,
            evaluation: None,
            dates,
            cursor: None,
        });
        drop(state);
        self.pass_queued()
    }

    /// What a short path does once it has queued its statement's response: counts the
    /// statement, ends any COPY, and lets the frame go on as it came. Says yes.
    fn pass_queued(&mut self) -> bool {
        self.statements.inc();
        self.copy_in = None;
        self.unchanged = true;
        true
    }

    /// [`Frontend::query`]'s full path: the text planned (or its shape found inert), then
    /// forwarded, rewritten, read in pages or refused.
    fn query_planned(&mut self, sql: &[u8], shape: Option<&[u8]>, out: &mut BytesMut) {
        // The catalog was refreshed when the Query's readiness was judged (`catalog_readiness`).
        let commands = self.cursor_commands(sql);
        if let Some(fetch) = self.evaluated_fetch(&commands) {
            match fetch {
                Ok(fetching) => self.send_fetch(sql, fetching, out),
                Err(refusal) => {
                    extended::put_query(out, plan::poison(&refusal, Some(sql)).as_bytes());
                    self.refuse_query(refusal, Some(sql));
                }
            }
            return;
        }
        match self.plan_query_shaped(sql, shape) {
            Ok((planned, count, events)) => {
                let paged = self.pages(&planned).and_then(|page_plan| {
                    planned
                        .sql
                        .as_deref()
                        .or_else(|| std::str::from_utf8(sql).ok())
                        .filter(|text| paging::begins_with_statement(text))
                        .map(|text| (page_plan, text))
                });
                match paged {
                    Some((page_plan, text)) => {
                        out.extend_from_slice(&paging::query(&paging::opening(text, page_plan)));
                        lock(&self.state).paging = Some(Paging {
                            plan: page_plan,
                            portal: None,
                            next: Next::Wait,
                        });
                    }
                    _ => match &planned.sql {
                        Some(sql) => extended::put_query(out, sql.as_bytes()),
                        None => self.unchanged = true,
                    },
                }
                self.start_copy(planned.copy.as_ref());
                self.close_cursors(&commands);
                let cursor = planned.declares.as_ref().map(|declares| {
                    self.declare_sent(declares, Vec::new(), &planned.dates, &planned.dates)
                });
                lock(&self.state).expected.push_back(Expect::Query {
                    copy: planned.copy,
                    count,
                    events: events.into(),
                    refused: None,
                    evaluation: planned.evaluation,
                    dates: planned.dates,
                    cursor,
                });
            }
            Err(refusal) => {
                extended::put_query(out, plan::poison(&refusal, Some(sql)).as_bytes());
                self.refuse_query(refusal, Some(sql));
            }
        }
    }

    /// Whether a simple Query's statement is read in pages ([`paging`]): one pgseal filters
    /// in the server's order with a `LIMIT`, while nothing else is in flight.
    fn pages(&self, planned: &Planned) -> Option<PagePlan> {
        let evaluation = planned.evaluation.as_deref()?;
        if planned.copy.is_some()
            || planned.declares.is_some()
            || planned.fetches.is_some()
            || !planned.read_only
        {
            return None;
        }
        let state = lock(&self.state);
        let idle = state
            .expected
            .iter()
            .all(|e| matches!(e, Expect::CatalogLoad { .. }));
        // A portal of the client's named as pgseal's cursor would clash with it.
        if !idle
            || state.group_open
            || state.paging.is_some()
            || state.portals.contains_key(paging::CURSOR.as_bytes())
        {
            return None;
        }
        paging::plan(evaluation, state.transaction)
    }

    fn parse(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let parse = Parse::decode(frame).map_err(Self::malformed)?;
        // The catalog was refreshed when the Parse's readiness was judged (`catalog_readiness`).
        let floor = u16::try_from(parse.param_types.len()).unwrap_or(u16::MAX);
        let mut commands = self.cursor_commands(parse.sql);
        if commands.is_empty() && starts_fetch_or_move(parse.sql) {
            // A prepared FETCH may run after its cursor is declared again: its Execute checks.
            commands = self.read_cursor_commands(parse.sql);
        }
        let reads_cursor = match commands.as_slice() {
            [Command::Fetch { name, .. }] => Some(name.clone()),
            _ => None,
        };
        let fetch = self.evaluated_fetch(&commands);
        let planned = match fetch {
            Some(Ok(fetching)) => self.plan_fetch(parse.sql, fetching),
            Some(Err(refusal)) => Err(refusal),
            None => self.plan(parse.sql, Some(floor)),
        };
        let planned = planned.and_then(|mut planned| {
            planned.statement = self.through_cursors(parse.sql, Arc::clone(&planned.statement));
            // Checked at Parse already, so a statement needing an end user fails early.
            if planned.statement.sealed {
                let end_user = {
                    let state = lock(&self.state);
                    state
                        .end_users_sent
                        .for_statement(planned.statement.end_user.as_deref())
                        .map(str::to_string)
                };
                let account = self
                    .protection
                    .budgets
                    .account(&self.role, end_user.as_deref());
                if let Err(reason) = account.check_end_user() {
                    return Err(Refusal {
                        sqlstate: reason.sqlstate(),
                        message: reason.message(),
                        hint: reason.hint(),
                    });
                }
            }
            Ok(planned)
        });
        match planned {
            Ok(planned) => {
                self.close_cursors(&commands);
                let prepared = self.prepared(planned, parse.sql, parse.param_types, reads_cursor);
                Parse {
                    name: parse.name,
                    sql: prepared
                        .origin
                        .server_sql
                        .as_deref()
                        .map(str::as_bytes)
                        .unwrap_or(parse.sql),
                    param_types: prepared.origin.server_types.clone(),
                }
                .encode(out);
                let prepared = Arc::new(prepared);
                let mut state = lock(&self.state);
                state
                    .pending_statements
                    .insert(parse.name.to_vec(), Arc::clone(&prepared));
                state.expected.push_back(Expect::Parse {
                    name: parse.name.to_vec(),
                    prepared,
                });
            }
            Err(refusal) => self.poison_parse(&parse, refusal, out),
        }
        Ok(())
    }

    /// Sends the server a Parse that fails at once in place of `parse`, refused with `refusal`.
    fn poison_parse(&self, parse: &Parse<'_>, refusal: Refusal, out: &mut BytesMut) {
        Parse {
            name: parse.name,
            sql: plan::poison(&refusal, Some(parse.sql)).as_bytes(),
            param_types: Vec::new(),
        }
        .encode(out);
        if parse.name.is_empty() {
            // The server drops the unnamed statement before it parses a new one.
            let mut state = lock(&self.state);
            state.statements.remove(parse.name);
            state.pending_statements.remove(parse.name);
        }
        self.refuse(refusal, Some(parse.sql));
    }

    /// A planned Parse as pgseal keeps it: the server's parameter types (a sealed parameter's
    /// is its storage type; ParameterDescription will tell the client the declared one) and
    /// text, and what it was planned from.
    fn prepared(
        &self,
        planned: Planned,
        client_sql: &[u8],
        client_types: Vec<u32>,
        reads_cursor: Option<String>,
    ) -> Prepared {
        let catalog = Arc::clone(&lock(&self.state).catalog);
        let mut types = client_types.clone();
        if planned.params.iter().any(Option::is_some) {
            if types.len() < planned.params.len() {
                types.resize(planned.params.len(), 0);
            }
            for (slot, seal) in planned.params.iter().enumerate() {
                if let Some(seal) = seal {
                    let storage = catalog.storage(seal.column);
                    let storage_type = self
                        .protection
                        .column(seal.column)
                        .storage_type_oid(storage);
                    types[slot] = match (seal.array, seal.each, storage) {
                        (true, _, Storage::Bytea) => BYTEA_ARRAY,
                        (true, _, Storage::Text) => TEXT_ARRAY,
                        // Elements of the storage type, or of the column's own (tokens), which
                        // the cast in the text gives.
                        (false, true, _) => {
                            plan::storage_array_type(storage_type).map_or(0, |(_, oid)| oid)
                        }
                        (false, false, _) => storage_type,
                    };
                }
            }
        }
        let mut prepared = Prepared {
            params: planned.params,
            client_types: client_types.clone(),
            shape: Default::default(),
            copy: planned.copy,
            info: Some(planned.statement),
            read_only: planned.read_only,
            copies_in: planned.copies_in,
            evaluation: planned.evaluation,
            probes: planned.probes,
            changes_dates: planned.changes_dates,
            dates: planned.dates,
            declares: planned.declares,
            fetches: planned.fetches,
            reads_cursor,
            events: std::str::from_utf8(client_sql)
                .map(|text| txevents::events(&self.protection, text))
                .unwrap_or_default(),
            origin: PreparedOrigin {
                generation: self.generation,
                client_sql: Arc::new(zeroize::Zeroizing::new(client_sql.to_vec())),
                client_types,
                server_sql: planned.sql,
                comparable_sql: planned.comparable_sql,
                stored_literals: planned.stored_literals,
                server_types: types,
            },
            runs_plain: false,
        };
        prepared.runs_plain = prepared.is_plain();
        prepared
    }

    /// A prepared statement planned under policies a reload has replaced, planned again under
    /// the ones in force: kept when the server's statement is what they would have sent (its
    /// result columns are planned again at their next Execute), refused otherwise — the client
    /// prepares it again (SQLSTATE 26000, which PgJDBC, for one, heals by re-preparing).
    fn replan(&mut self, name: &[u8], stale: &Prepared) -> Result<Arc<Prepared>, Refusal> {
        let origin = &stale.origin;
        if stale.declares.is_some() || stale.fetches.is_some() || stale.reads_cursor.is_some() {
            // Cursors follow their DECLARE: such a statement is prepared again.
            lock(&self.state).statements.remove(name);
            return Err(Refusal::new(
                "26000",
                format!(
                    "prepared statement \"{}\" works on a cursor and was planned under policies \
                     pgseal has reloaded since; prepare it again",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        let floor = u16::try_from(origin.client_types.len()).unwrap_or(u16::MAX);
        let at_parse = Some(Arc::clone(&stale.dates));
        let replanned = match self.plan_in(&origin.client_sql, Some(floor), at_parse) {
            Ok(mut planned) => {
                planned.statement =
                    self.through_cursors(&origin.client_sql, Arc::clone(&planned.statement));
                Ok(self.prepared(
                    planned,
                    &origin.client_sql,
                    origin.client_types.clone(),
                    None,
                ))
            }
            Err(refusal) => Err(refusal),
        };
        let catalog = Arc::clone(&lock(&self.state).catalog);
        let replanned = replanned.map(|fresh| {
            let same = self.same_for_the_server(&fresh.origin, origin, &catalog);
            (fresh, same)
        });
        let mut state = lock(&self.state);
        match replanned {
            Ok((mut fresh, true)) => {
                *fresh.shape.lock() = stale.shape.lock().clone();
                // The server keeps what it was sent.
                fresh.origin.server_sql = origin.server_sql.clone();
                fresh.origin.stored_literals = origin.stored_literals.clone();
                let fresh = Arc::new(fresh);
                state.statements.insert(name.to_vec(), Arc::clone(&fresh));
                Ok(fresh)
            }
            outcome => {
                state.statements.remove(name);
                Err(match outcome {
                    Err(refusal) => refusal,
                    Ok(_) => Refusal::new(
                        "26000",
                        format!(
                            "prepared statement \"{}\" was planned under policies pgseal has \
                             reloaded since, and the new ones send it differently; prepare it \
                             again",
                            String::from_utf8_lossy(name)
                        ),
                    ),
                })
            }
        }
    }

    /// Whether the server's statement, planned as `stale`, is what the policies in force plan as
    /// `fresh`: the same text but for the literals sealed for storage (a randomized seal differs
    /// each time), the same parameter types, and each of those literals one the new keys open
    /// and the new search settings would have stamped alike.
    fn same_for_the_server(
        &self,
        fresh: &PreparedOrigin,
        stale: &PreparedOrigin,
        catalog: &catalog::DatabaseCatalog,
    ) -> bool {
        if fresh.comparable() != stale.comparable()
            || fresh.server_types != stale.server_types
            || fresh.stored_literals.len() != stale.stored_literals.len()
        {
            return false;
        }
        let text = crate::protect::values::Format::Text;
        let canonical = crate::protect::date_settings::DateSettings::canonical();
        fresh
            .stored_literals
            .iter()
            .zip(&stale.stored_literals)
            .all(|(new, old)| {
                let crypto = self.protection.column(new.column);
                if crypto.mode != pgseal_policies::SealMode::Randomized {
                    // Deterministic envelopes, tokens and pseudonyms: the same bytes, or the
                    // keys, domain or type changed.
                    return new.stored == old.stored;
                }
                // Randomized: the same plaintext under the key version the new policy seals
                // with, stamped with the same search tokens.
                let storage = catalog.storage(new.column);
                let opened = |stored: &[u8]| crypto.open(stored, text, storage, canonical).ok();
                let same_value = matches!(
                    (opened(&old.stored), opened(&new.stored)),
                    (Some(a), Some(b)) if *a == *b
                );
                let same_version = crypto.envelope_version(&old.stored, text, storage)
                    == crypto.envelope_version(&new.stored, text, storage);
                let stamped = storage != Storage::Text
                    || std::str::from_utf8(&old.stored)
                        .ok()
                        .is_some_and(|text| matches!(crypto.restamp(text), Ok(None)));
                same_value && same_version && stamped
            })
    }

    /// Whether a reload has put policies in force that the session has not moved to yet.
    fn reload_pending(&self) -> bool {
        self.in_force.generation() != self.generation
    }

    /// Moves the session to the policies and keyring a reload put in force, between
    /// transactions: nothing in flight, no transaction open, no COPY, no cancel pending. Its
    /// prepared statements are planned again as they are next bound ([`Frontend::replan`]).
    /// A session whose database no longer has a policy ends (57P01): it reconnects to what the
    /// new set gives it.
    ///
    /// Returns whether to hold the message: a session with only a pipeline in flight (no
    /// transaction or group open) waits for it to drain, then moves.
    fn follow_reload(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<bool, SessionError> {
        if !self.reload_pending() {
            return Ok(false);
        }
        let set = self.in_force.current();
        {
            let state = lock(&self.state);
            let open = state.server_skipping
                || state.transaction != b'I'
                || state.group_open
                || self.copy_in.is_some();
            let in_flight = !state.expected.is_empty()
                || state.gate.is_some()
                || state.cancel_in_flight.is_some();
            if !open && in_flight {
                return Ok(true);
            }
            if open || !query_spares(frame) {
                // Nothing to revoke when the database is protected exactly as before.
                let unchanged = matches!(
                    set.for_database(&self.database),
                    ForDatabase::Protected(p) if p.digest == self.protection.digest
                );
                // A revocation must land: a session that holds its transaction open past the
                // grace, counted from when its policies were replaced, ends rather than keep
                // the old views.
                let behind = self
                    .in_force
                    .replaced_at(self.generation)
                    .map(|at| at.elapsed())
                    .unwrap_or_default();
                if !unchanged && behind > self.in_force.grace() {
                    return Err(SessionError::ReloadGraceOver(behind));
                }
                return Ok(false);
            }
        }
        let ForDatabase::Protected(protection) = set.for_database(&self.database) else {
            return Err(SessionError::PolicyWithdrawn(self.database.clone()));
        };
        self.generation = set.generation();
        self.class = protection.policy.class_of(&self.role);
        self.protection = Arc::clone(&protection);
        self.statements = protection.metrics.statements.with(&[&self.role]);
        self.inert_shapes = Default::default();
        {
            let mut state = lock(&self.state);
            state.catalog = protection.catalogs.get(&self.database);
            state.catalog_stale = true;
            state.protection = (self.generation, protection);
            // A WITH HOLD cursor outlives transactions: what it kept has the old views.
            state.cursors.fail_all();
        }
        self.refresh_catalog(out);
        debug!(
            generation = self.generation,
            "session moved to the reloaded policies"
        );
        Ok(false)
    }

    fn bind(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        // Names and result formats first: most statements bound have nothing to seal or
        // evaluate, and their parameters need not be collected.
        let head = Bind::head(frame).map_err(Self::malformed)?;
        let (statement, dates) = {
            let mut state = lock(&self.state);
            let statement = state.statement(head.statement);
            let dates = state.input_dates();
            // A statement that may change DateStyle or TimeZone, bound again: what follows it
            // is read as unknown until the server has answered.
            if statement.as_ref().is_some_and(|s| s.changes_dates) {
                state.dates_changing = true;
            }
            (statement, dates)
        };
        let Some(statement) = statement else {
            // A statement pgseal did not plan (prepared with SQL PREPARE, or one whose Parse
            // the server rejected): its parameters cannot be known to be safe.
            extended::put_bind(out, head.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
            self.refuse(
                Refusal::new(
                    "26000",
                    "pgseal has no plan for this prepared statement; prepare it with the protocol's Parse through pgseal",
                ),
                None,
            );
            return Ok(());
        };
        let statement = if statement.origin.generation == self.generation {
            statement
        } else {
            match self.replan(head.statement, &statement) {
                Ok(fresh) => fresh,
                Err(refusal) => {
                    extended::put_bind(out, head.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
                    self.refuse(refusal, None);
                    return Ok(());
                }
            }
        };
        // A DECLARE's query is evaluated at its FETCHes, with the parameters bound here.
        let evaluation = statement.evaluation.clone().or_else(|| {
            statement
                .declares
                .as_ref()
                .and_then(|d| d.evaluation.clone())
        });
        let bind = if statement.params.iter().all(Option::is_none)
            && evaluation.is_none()
            && statement.fetches.is_none()
        {
            None
        } else {
            Some(Bind::decode(frame).map_err(Self::malformed)?)
        };
        let evaluation_params = match (&evaluation, &bind) {
            (Some(evaluation), Some(bind)) => {
                match evaluated::read_params(bind, &statement, evaluation) {
                    Ok(params) => params,
                    Err(refusal) => {
                        extended::put_bind(out, head.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
                        self.refuse(refusal, None);
                        return Ok(());
                    }
                }
            }
            _ => Vec::new(),
        };
        if let Some(bind) = &bind {
            // Taken only here: the catalog is shared by the database's sessions, and cloning
            // its `Arc` for every Bind would bounce its count between cores.
            let catalog = Arc::clone(&lock(&self.state).catalog);
            let sealed = if statement.params.iter().all(Option::is_none) {
                Ok((
                    (0..bind.params.len())
                        .map(|i| bind.param_format(i))
                        .collect(),
                    bind.params
                        .iter()
                        .map(|v| v.map(std::borrow::Cow::Borrowed))
                        .collect(),
                ))
            } else {
                params::seal(&self.protection, bind, &statement, &catalog, &dates)
            };
            match sealed {
                Ok((formats, mut values)) => {
                    let mut result_formats = bind.result_formats.clone();
                    if let Some(evaluation) = &evaluation {
                        // What only pgseal reads never reaches the server.
                        for (index, _) in &evaluation.params {
                            if let Some(value) = values.get_mut(usize::from(*index) - 1) {
                                *value = None;
                            }
                        }
                    }
                    let described = statement
                        .evaluation
                        .as_ref()
                        .or(statement.fetches.as_ref().map(|f| &f.cursor.evaluation));
                    if let Some(evaluation) = described {
                        result_formats =
                            evaluated::result_formats(&result_formats, evaluation).into();
                    }
                    let mut formats = formats;
                    let probes = evaluated::probe_values(
                        &self.protection,
                        &catalog,
                        &dates,
                        &statement.probes,
                        &evaluation_params,
                    );
                    evaluated::append_params(&mut formats, &mut values, probes);
                    let params: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
                    extended::put_bind(
                        out,
                        bind.portal,
                        bind.statement,
                        &formats,
                        &params,
                        &result_formats,
                    );
                }
                Err(refusal) => {
                    extended::put_bind(out, bind.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
                    self.refuse(refusal, None);
                    return Ok(());
                }
            }
        } else {
            self.unchanged = true;
        }
        let mut state = lock(&self.state);
        let portal = Portal {
            statement,
            result_formats: head.result_formats,
            dates,
            evaluation_params,
            shape: Default::default(),
            leftover: Default::default(),
            bound_at: state.runs_sent,
        };
        state.portals.bind(head.portal, portal);
        state.expected.push_back(Expect::Bind);
        Ok(())
    }

    fn describe(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let (kind, name) = extended::decode_target(frame, "Describe").map_err(Self::malformed)?;
        if kind == b'S' {
            let stale = lock(&self.state)
                .statement(name)
                .filter(|s| s.origin.generation != self.generation);
            if let Some(stale) = stale
                && let Err(refusal) = self.replan(name, &stale)
            {
                poison_describe(out);
                self.refuse(refusal, None);
                return Ok(());
            }
        }
        let mut state = lock(&self.state);
        let expect = if kind == b'S' {
            Expect::DescribeStatement(state.statement(name).unwrap_or_default())
        } else {
            // An SQL cursor is a portal too (psycopg 3 describes its cursors): one pgseal
            // evaluates is described without pgseal's hidden columns, whatever pgseal knew of
            // an earlier portal so named.
            let evaluated = match state.cursors.lookup_portal(name) {
                Lookup::Evaluated(cursor) => Some(cursor),
                _ => None,
            };
            let portal = evaluated
                .map(|cursor| {
                    Arc::new(Portal {
                        statement: Arc::new(Prepared {
                            evaluation: Some(Arc::clone(&cursor.evaluation)),
                            ..Default::default()
                        }),
                        result_formats: Default::default(),
                        dates: Arc::default(),
                        evaluation_params: Vec::new(),
                        shape: Default::default(),
                        leftover: Default::default(),
                        bound_at: 0,
                    })
                })
                .or_else(|| state.portals.get(name).cloned());
            Expect::DescribePortal(portal.unwrap_or_else(empty_portal))
        };
        state.expected.push_back(expect);
        self.unchanged = true;
        Ok(())
    }

    fn execute(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let (name, limit) = extended::decode_execute(frame).map_err(Self::malformed)?;
        if self.execute_plain(name) {
            return Ok(());
        }
        let (known, cursor_refusal) = {
            let state = lock(&self.state);
            (
                state.portals.get(name).cloned(),
                cursor_portal_refusal(&state, name),
            )
        };
        // pgseal needs every row of a statement it evaluates; it suspends the portal itself.
        let evaluated = known
            .as_ref()
            .is_some_and(|p| p.statement.evaluation.is_some() || p.statement.fetches.is_some());
        let row_limit = if evaluated { limit.max(0) as u32 } else { 0 };
        let info = match known.as_ref().and_then(|p| p.statement.info.clone()) {
            Some(info) => info,
            // A portal pgseal did not bind (a cursor DECLAREd in SQL): its rows count as sealed.
            None => Arc::new(StatementInfo {
                sealed: true,
                fingerprint: crate::audit::Fingerprint::of("EXECUTE portal"),
                tables: Vec::new(),
                columns: Vec::new(),
                end_user: None,
            }),
        };
        // Whatever pgseal knew of a portal so named: the server's portal may be an SQL cursor
        // declared since.
        if let Some(refusal) = cursor_refusal {
            poison_execute(out);
            self.refuse(refusal, None);
            return Ok(());
        }
        let portal = known.unwrap_or_else(empty_portal);
        // A later FETCH of an evaluated cursor in formats its kept rows are not in: refused
        // before it reaches the server, the cursor left as it is.
        let formats_refusal = portal.statement.fetches.as_ref().and_then(|fetching| {
            lock(&self.state)
                .cursors
                .formats_refusal(&fetching.name, &portal.result_formats)
        });
        if let Some(refusal) = formats_refusal.or_else(|| self.stale_fetch(&portal.statement)) {
            poison_execute(out);
            self.refuse(refusal, None);
            return Ok(());
        }
        if !portal.statement.events.is_empty() {
            // What it does to the end user, assuming it succeeds (as for a Query), so that a
            // pipelined `SET pgseal.end_user` counts for the statements after it.
            let mut state = lock(&self.state);
            for event in &portal.statement.events {
                txevents::apply(&mut state.end_users_sent, event, b"COMMIT");
            }
        }
        let count = match self.counting(&info) {
            Ok(count) => count,
            Err(refusal) => {
                poison_execute(out);
                self.refuse(refusal, None);
                return Ok(());
            }
        };
        self.start_copy(portal.statement.copy.as_ref());
        let cursor = match (&portal.statement.declares, &portal.statement.fetches) {
            (Some(declares), _) => Some(self.declare_sent(
                declares,
                portal.evaluation_params.clone(),
                &portal.statement.dates,
                &portal.dates,
            )),
            (None, Some(fetching)) => Some(CursorOp::Fetch(Arc::clone(fetching))),
            (None, None) => None,
        };
        // A statement pgseal filters in the server's order, with a LIMIT, read in pages: the
        // unnamed portal only (SQL cannot FETCH from it, so the rows the server keeps once
        // the page is full stay out of reach), run for the first time.
        let first_page = match portal.statement.evaluation.as_deref() {
            Some(evaluation)
                if limit == 0
                    && name.is_empty()
                    && cursor.is_none()
                    && portal.statement.copy.is_none()
                    && portal.statement.read_only
                    && portal.leftover.lock().is_none() =>
            {
                paging::first_page(evaluation, &portal.evaluation_params)
            }
            _ => None,
        };
        let mut state = lock(&self.state);
        // Nor after another statement in flight: pgseal may fail that one, and then drop
        // every response up to ReadyForQuery, this Execute's too.
        let first_page = first_page.filter(|_| {
            state.paging.is_none()
                && !state
                    .expected
                    .iter()
                    .any(|e| matches!(e, Expect::Execute { .. } | Expect::Query { .. }))
        });
        let group = state.groups_sent;
        // A COPY FROM sends no rows to block, and its server waits for the CopyData behind.
        if count.is_some() && !portal.statement.copies_in {
            state.gate = Some(Gate {
                group,
                holds_sync: !portal.statement.read_only,
                flushed: false,
            });
        }
        // A portal run without a Describe (an SQL cursor's, or one the client never
        // described), or that may be another by now (something ran since its Bind): pgseal
        // describes it itself, so that its rows get the role's views and, when they carry
        // sealed columns, count as sealed.
        let described_again = portal.may_have_changed(state.runs_sent)
            && portal.statement.evaluation.is_none()
            && portal.statement.fetches.is_none();
        if described_again || portal.shape().is_none() {
            extended::put_frame(out, b'D', |b| {
                b.extend_from_slice(b"P");
                b.extend_from_slice(name);
                b.extend_from_slice(&[0]);
            });
            state
                .expected
                .push_back(Expect::ShapePortal(Arc::clone(&portal)));
        }
        state.expected.push_back(Expect::Execute {
            portal,
            count,
            group,
            row_limit,
            cursor,
            paged: first_page.is_some(),
        });
        if let Some(first) = first_page {
            out.extend_from_slice(&paging::execute(name, first));
            state.paging = Some(Paging {
                plan: PagePlan {
                    wrapped: false,
                    first,
                },
                portal: Some(name.to_vec()),
                next: Next::Wait,
            });
        } else if row_limit > 0 {
            extended::put_frame(out, b'E', |b| {
                b.extend_from_slice(name);
                b.extend_from_slice(&[0, 0, 0, 0, 0]);
            });
        } else {
            self.unchanged = true;
        }
        Ok(())
    }

    /// [`Frontend::execute`]'s short path: an Execute of a portal whose statement is plain
    /// ([`Prepared::is_plain`]) and whose result's shape is known, while no SQL cursor is
    /// recorded and no budget counts the rows, is queued under one lock and goes on as it
    /// came — what the full path would do for it, without its lookups. Otherwise does nothing
    /// and says no: the full path runs.
    fn execute_plain(&mut self, name: &[u8]) -> bool {
        let mut state = lock(&self.state);
        let Some(portal) = state.portals.get(name) else {
            return false;
        };
        if !portal.statement.runs_plain
            || portal.may_have_changed(state.runs_sent)
            || !portal.has_shape()
            || !state.cursors.is_empty()
        {
            return false;
        }
        let statement_user = portal
            .statement
            .info
            .as_ref()
            .and_then(|info| info.end_user.as_deref());
        let end_user = state.end_users_sent.for_statement(statement_user);
        if self
            .protection
            .budgets
            .counts_unsealed(&self.role, end_user)
        {
            return false;
        }
        let portal = Arc::clone(portal);
        let group = state.groups_sent;
        state.expected.push_back(Expect::Execute {
            portal,
            count: None,
            group,
            row_limit: 0,
            cursor: None,
            paged: false,
        });
        drop(state);
        self.pass_queued()
    }

    fn close(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let (kind, name) = extended::decode_target(frame, "Close").map_err(Self::malformed)?;
        let mut state = lock(&self.state);
        if kind == b'S' {
            state.pending_statements.remove(name);
        } else if let Ok(cursor) = std::str::from_utf8(name) {
            // An SQL cursor is a portal too.
            state.cursors.close(Some(cursor));
        }
        // The maps change when the server confirms (CloseComplete), not before.
        state.expected.push_back(Expect::Close {
            kind,
            name: name.to_vec(),
        });
        out.extend_from_slice(frame);
        Ok(())
    }

    fn start_copy(&mut self, copy: Option<&Arc<crate::analyze::CopyPlan>>) {
        self.copy_in = None;
        let Some(copy) = copy else { return };
        if copy.direction != crate::analyze::CopyDirection::From {
            return;
        }
        let (catalog, dates) = {
            let state = lock(&self.state);
            (Arc::clone(&state.catalog), state.input_dates())
        };
        self.copy_in = CopyIn::new(&self.protection, &catalog, copy, dates);
    }
}

fn empty_portal() -> Arc<Portal> {
    Arc::new(Portal {
        statement: Arc::default(),
        result_formats: Default::default(),
        dates: Arc::default(),
        evaluation_params: Vec::new(),
        shape: Default::default(),
        leftover: Default::default(),
        bound_at: 0,
    })
}

impl Filter for Frontend {
    fn inspects(&mut self, tag: u8) -> bool {
        match tag {
            b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'F' => true,
            b'd' | b'c' | b'f' => self.copy_in.is_some(),
            _ => false,
        }
    }

    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&lock(&self.state).wake_frontend))
    }

    fn busy(&self) -> bool {
        !lock(&self.state).expected.is_empty()
    }

    fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        self.unchanged = false;
        let flow = self.offer(frame, out)?;
        Ok(super::unchanged_flow(
            flow,
            std::mem::take(&mut self.unchanged),
        ))
    }
}

impl Frontend {
    /// [`Filter::on_frame`]: what happens to one frame from the client.
    ///
    /// The shared state is locked once for everything before the frame's own handling, and
    /// once after it: a Sync costs one lock.
    fn offer(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        let tag = frame[0];
        let mut state = lock(&self.state);
        // The client's Query read in pages is held until its last step has been answered:
        // it is the frame offered again until then.
        if let Some(paging) = state.paging.as_mut() {
            match std::mem::replace(&mut paging.next, Next::Wait) {
                Next::Wait => return Ok(Flow::Hold(GATE_POLL)),
                Next::Send(frames) => {
                    out.extend_from_slice(&frames);
                    return Ok(Flow::Hold(GATE_POLL));
                }
                Next::End => {
                    state.paging = None;
                    state.runs_sent += 1;
                    if tag == b'Q' {
                        state.group_open = false;
                        state.groups_sent += 1;
                    } else {
                        state.group_open = true;
                    }
                    return Ok(Flow::Done);
                }
            }
        }
        if state.cancel_pending() {
            return Ok(Flow::Hold(GATE_POLL));
        }
        if let Some(failed) = state.failed_group {
            if failed == state.groups_sent {
                if tag != b'S' {
                    // The client was told its group failed: the rest of it never runs.
                    return Ok(Flow::Done);
                }
                // The server completed the statement pgseal ended; it fails the group
                // here, so nothing of it commits (the client was told it failed).
                poison_execute(out);
            }
            state.failed_group = None;
        }
        let group = state.groups_sent;
        if let Some(gate) = state.gate.as_mut()
            && gate.group == group
            && (tag != b'S' || gate.holds_sync)
        {
            if !gate.flushed {
                gate.flushed = true;
                extended::put_frame(out, b'H', |_| {});
            }
            return Ok(Flow::Hold(GATE_POLL));
        }
        if matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'F' | b'E' | b'S') && self.reload_pending() {
            drop(state);
            if self.follow_reload(frame, out)? {
                return Ok(Flow::Hold(GATE_POLL));
            }
            state = lock(&self.state);
        }
        // A fast-path call is refused whatever the catalog says.
        let readiness = if matches!(tag, b'Q' | b'P' | b'B' | b'D') {
            self.catalog_readiness(&mut state, frame, out)
        } else {
            Readiness::Ready
        };
        match readiness {
            Readiness::Wait => return Ok(Flow::Hold(GATE_POLL)),
            Readiness::Ready => {
                // A new statement ends any COPY; Sync, Flush, Describe and Close may arrive
                // while a COPY started by Execute is under way (the server ignores Sync and
                // Flush in COPY mode), and must not end the sealing of its rows.
                if matches!(tag, b'Q' | b'P' | b'B' | b'F') {
                    self.copy_in = None;
                }
                if tag == b'S' {
                    state.server_skipping = false;
                    state.expected.push_back(Expect::Sync);
                    self.unchanged = true;
                } else if !state.server_skipping {
                    drop(state);
                    self.handle(frame, out)?;
                    state = lock(&self.state);
                }
                // Otherwise the server skips it anyway (it failed an earlier message of this
                // batch).
            }
            Readiness::Refused(refusal) => {
                drop(state);
                self.refuse_message(frame, refusal, out)?;
                state = lock(&self.state);
            }
        }
        if matches!(tag, b'Q' | b'E') && state.paging.is_some() {
            return Ok(Flow::Hold(GATE_POLL));
        }
        match tag {
            // A Query ends the implicit transaction of the extended messages before it, as a
            // Sync does.
            b'S' | b'Q' => state.group_open = false,
            b'P' | b'B' | b'D' | b'E' | b'C' => state.group_open = true,
            _ => {}
        }
        if matches!(tag, b'S' | b'Q' | b'F') {
            state.groups_sent += 1;
        }
        if matches!(tag, b'E' | b'Q' | b'C' | b'F' | b'S') {
            state.runs_sent += 1;
        }
        Ok(Flow::Done)
    }
}

/// Whether a statement text starts with `FETCH` or `MOVE` (a prepared one is checked again
/// at each Execute).
fn starts_fetch_or_move(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let word = |w: &[u8]| {
        sql.get(start..start + w.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(w))
    };
    word(b"fetch") || word(b"move")
}

/// Why an Execute of a portal pgseal did not bind is refused: an SQL cursor pgseal
/// evaluates holds the server's superset (pgseal's hidden columns, rows it has not
/// filtered), which only its FETCHes may read.
fn cursor_portal_refusal(state: &Shared, name: &[u8]) -> Option<Refusal> {
    match state.cursors.lookup_portal(name) {
        Lookup::Streamed => None,
        Lookup::Refused(refusal) => Some(refusal),
        Lookup::Evaluated(_) => Some(Refusal::new(
            "0A000",
            format!(
                "pgseal filters or sorts cursor {} itself: read it with FETCH, not by \
                 executing its portal",
                String::from_utf8_lossy(name)
            ),
        )),
    }
}

/// How long a message waiting for a counted Execute's result (or a cancel) waits before it
/// looks again, when nothing wakes it earlier (the backend does as soon as the result ends).
const GATE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether pgseal's catalog should be asked for again now, whatever the next frame: it is
/// stale (or another session found it superseded), and the server is idle. Not inside an
/// extended-protocol group (the query would end its implicit transaction), nor in an aborted
/// transaction (the query would fail, and only the transaction's end runs).
fn catalog_refresh_due(state: &Shared) -> bool {
    state.expected.is_empty()
        && !state.server_skipping
        && !state.group_open
        && state.transaction != b'E'
        && (state.catalog_stale || !state.catalog.is_current())
}

/// Whether pgseal may send its own Query (the catalog's) before `frame`: a Query destroys the
/// unnamed prepared statement, so not before a Bind or Describe of it, nor inside a message
/// sequence (Execute, Sync, a fast-path call). A Query or Parse replaces it anyway.
fn query_spares(frame: &[u8]) -> bool {
    match frame[0] {
        b'Q' | b'P' => true,
        b'B' => Bind::statement_name(frame).is_ok_and(|name| !name.is_empty()),
        b'D' => extended::decode_target(frame, "Describe")
            .is_ok_and(|(kind, name)| kind == b'S' && !name.is_empty()),
        _ => false,
    }
}

/// What the catalog says of a statement about to be planned.
enum Readiness {
    /// Plan it.
    Ready,
    /// Hold it: the catalog is on its way.
    Wait,
    /// Refuse it: no catalog, and none can come now.
    Refused(Refusal),
}

/// A Describe of a statement that cannot exist: the server fails it at once.
fn poison_describe(out: &mut BytesMut) {
    extended::put_frame(out, b'D', |b| {
        b.extend_from_slice(b"S");
        b.extend_from_slice(NO_SUCH_STATEMENT);
        b.extend_from_slice(&[0]);
    });
}

/// An Execute of a portal no client can have bound: the server fails it at once, aborting the
/// rest of the group up to Sync (and the group's implicit transaction).
fn poison_execute(out: &mut BytesMut) {
    extended::put_frame(out, b'E', |b| {
        b.extend_from_slice(NO_SUCH_STATEMENT);
        b.extend_from_slice(&[0, 0, 0, 0, 0]);
    });
}

impl Frontend {
    /// Handles a frame other than Sync the server will run (see [`Frontend::offer`]).
    fn handle(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let tag = frame[0];
        debug_assert_ne!(tag, b'S', "a Sync is handled in `offer`");
        match tag {
            b'Q' => self.query(frame, out),
            b'P' => self.parse(frame, out),
            b'B' => self.bind(frame, out),
            b'D' => self.describe(frame, out),
            b'E' => self.execute(frame, out),
            b'C' => self.close(frame, out),
            b'F' => {
                // A fast-path function call bypasses SQL analysis: refused, like a statement.
                let refusal = Refusal::new(
                    "0A000",
                    "pgseal refuses fast-path function calls on protected sessions",
                );
                extended::put_query(out, plan::poison(&refusal, None).as_bytes());
                self.refuse_query(refusal, None);
                Ok(())
            }
            b'd' => match self.copy_in.as_mut() {
                Some(copy) => copy.data(extended::copy_data(frame), out),
                None => {
                    out.extend_from_slice(frame);
                    Ok(())
                }
            },
            b'c' => {
                if let Some(mut copy) = self.copy_in.take() {
                    copy.finish(out)?;
                    if copy.aborted() {
                        // pgseal already sent CopyFail for this COPY.
                        return Ok(());
                    }
                }
                out.extend_from_slice(frame);
                Ok(())
            }
            _ => {
                // CopyFail: the server aborts the COPY; whatever was held back is dropped.
                let aborted = self.copy_in.take().is_some_and(|copy| copy.aborted());
                if !aborted {
                    out.extend_from_slice(frame);
                }
                Ok(())
            }
        }
    }
}
