//! The client → server side of a protected session: every statement is planned before it
//! leaves (Query, Parse), parameters bound for sealed columns are sealed at Bind, COPY rows
//! into sealed tables are sealed field by field, and each message's expected response is
//! queued for the other side. A refused message is replaced by one that fails at once on the
//! server, so the server's state after it is exactly that of a real error.

use std::sync::Arc;

use bytes::BytesMut;
use pgseal_policies::ClassId;

use super::copy::CopyIn;
use super::plan::{self, POISON, Planned, single_form};
use super::state::{Expect, Portal, Prepared, Refusal, SharedState, lock};
use crate::error::SessionError;
use crate::protect::Protection;
use crate::protect::catalog;
use crate::protect::column::Storage;
use crate::protect::values::Format;
use crate::session::relay::Filter;
use crate::wire::extended::{self, Bind, Parse};

/// The OIDs of `text[]` and `bytea[]`, for lookups matching every key version's form.
const TEXT_ARRAY: u32 = 1009;
const BYTEA_ARRAY: u32 = 1001;

/// A statement name no client can have prepared (it starts with a NUL-free control byte), for
/// poisoned Binds.
const NO_SUCH_STATEMENT: &[u8] = b"\x01pgseal refused";

/// The client → server filter of a protected session.
pub struct Frontend {
    protection: Arc<Protection>,
    state: SharedState,
    class: ClassId,
    role: String,
    database: String,
    copy_in: Option<CopyIn>,
}

impl Frontend {
    /// The filter for a session of `role` on `database`.
    pub fn new(
        protection: Arc<Protection>,
        state: SharedState,
        role: &str,
        database: &str,
    ) -> Self {
        let class = protection.policy.class_of(role);
        Frontend {
            protection,
            state,
            class,
            role: role.to_string(),
            database: database.to_string(),
            copy_in: None,
        }
    }

    fn malformed(e: extended::Malformed) -> SessionError {
        SessionError::ClientProtocol(e.to_string())
    }

    /// Sends pgseal's catalog query first when the catalog is stale and the server is idle.
    fn refresh_catalog(&self, out: &mut BytesMut) {
        let mut state = lock(&self.state);
        if !state.expected.is_empty() || state.server_skipping {
            return;
        }
        let current = self
            .protection
            .catalogs
            .is_current(&self.database, state.catalog.generation);
        if current && !state.catalog_stale {
            return;
        }
        let generation = self.protection.catalogs.next_generation();
        extended::put_query(out, catalog::query(&self.protection.policy).as_bytes());
        state.expected.push_back(Expect::CatalogLoad { generation });
        state.catalog_stale = false;
    }

    fn plan(&self, sql: &[u8]) -> Result<Planned, Refusal> {
        let Ok(text) = std::str::from_utf8(sql) else {
            return Err(Refusal {
                sqlstate: "22021",
                message: "pgseal needs statements in UTF-8 (client_encoding UTF8)".into(),
            });
        };
        let (catalog, lexing) = {
            let state = lock(&self.state);
            (Arc::clone(&state.catalog), state.lexing)
        };
        if !lexing.standard() && !plan::only_settings(text) {
            return Err(Refusal {
                sqlstate: "0A000",
                message: "pgseal reads SQL as PostgreSQL does only with standard_conforming_strings = on and client_encoding = UTF8; restore them (SET/RESET) before anything else".into(),
            });
        }
        let planned = plan::plan(&self.protection, &catalog, self.class, &self.role, text)?;
        if planned.changes_catalog {
            lock(&self.state).catalog_stale = true;
            self.protection.catalogs.invalidate(&self.database);
        }
        Ok(planned)
    }

    fn refuse(&self, refusal: Refusal) {
        lock(&self.state)
            .expected
            .push_back(Expect::Refused(refusal));
    }

    fn query(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let sql = extended::decode_query(frame).map_err(Self::malformed)?;
        self.refresh_catalog(out);
        match self.plan(sql) {
            Ok(planned) => {
                match &planned.sql {
                    Some(sql) => extended::put_query(out, sql.as_bytes()),
                    None => out.extend_from_slice(frame),
                }
                self.start_copy(planned.copy.as_ref());
                lock(&self.state)
                    .expected
                    .push_back(Expect::Query { copy: planned.copy });
            }
            Err(refusal) => {
                extended::put_query(out, POISON.as_bytes());
                self.refuse(refusal);
                lock(&self.state).expected.push_back(Expect::Sync);
            }
        }
        Ok(())
    }

    fn parse(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let parse = Parse::decode(frame).map_err(Self::malformed)?;
        self.refresh_catalog(out);
        match self.plan(parse.sql) {
            Ok(planned) => {
                let catalog = Arc::clone(&lock(&self.state).catalog);
                let mut types = parse.param_types.clone();
                if planned.params.iter().any(Option::is_some) {
                    if types.len() < planned.params.len() {
                        types.resize(planned.params.len(), 0);
                    }
                    for (slot, seal) in planned.params.iter().enumerate() {
                        if let Some(seal) = seal {
                            // The server sees the storage type; ParameterDescription will tell
                            // the client the declared one.
                            let storage = catalog.storage(seal.column);
                            types[slot] = match (seal.array, storage) {
                                (true, Storage::Bytea) => BYTEA_ARRAY,
                                (true, Storage::Text) => TEXT_ARRAY,
                                (false, _) => self
                                    .protection
                                    .column(seal.column)
                                    .storage_type_oid(storage),
                            };
                        }
                    }
                }
                let sql = planned
                    .sql
                    .as_deref()
                    .map(str::as_bytes)
                    .unwrap_or(parse.sql);
                Parse {
                    name: parse.name,
                    sql,
                    param_types: types,
                }
                .encode(out);
                let prepared = Prepared {
                    params: planned.params,
                    client_types: parse.param_types,
                    shape: Default::default(),
                    copy: planned.copy,
                };
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
            Err(refusal) => {
                Parse {
                    name: parse.name,
                    sql: POISON.as_bytes(),
                    param_types: Vec::new(),
                }
                .encode(out);
                if parse.name.is_empty() {
                    // The server drops the unnamed statement before it parses a new one.
                    let mut state = lock(&self.state);
                    state.statements.remove(parse.name);
                    state.pending_statements.remove(parse.name);
                }
                self.refuse(refusal);
            }
        }
        Ok(())
    }

    fn bind(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let bind = Bind::decode(frame).map_err(Self::malformed)?;
        let (statement, catalog) = {
            let state = lock(&self.state);
            (state.statement(bind.statement), Arc::clone(&state.catalog))
        };
        let Some(statement) = statement else {
            // A statement pgseal did not plan (prepared with SQL PREPARE, or one whose Parse
            // the server rejected): its parameters cannot be known to be safe.
            extended::put_bind(out, bind.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
            self.refuse(Refusal {
                sqlstate: "26000",
                message: "pgseal has no plan for this prepared statement; prepare it with the protocol's Parse through pgseal".into(),
            });
            return Ok(());
        };
        if statement.params.iter().all(Option::is_none) {
            out.extend_from_slice(frame);
        } else {
            match self.seal_params(&bind, &statement, &catalog) {
                Ok((formats, values)) => {
                    let params: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
                    extended::put_bind(
                        out,
                        bind.portal,
                        bind.statement,
                        &formats,
                        &params,
                        &bind.result_formats,
                    );
                }
                Err(refusal) => {
                    extended::put_bind(out, bind.portal, NO_SUCH_STATEMENT, &[], &[], &[]);
                    self.refuse(refusal);
                    return Ok(());
                }
            }
        }
        let portal = Portal {
            statement,
            result_formats: bind.result_formats.clone(),
            shape: Default::default(),
        };
        let mut state = lock(&self.state);
        state.portals.insert(bind.portal.to_vec(), Arc::new(portal));
        state.expected.push_back(Expect::Bind);
        Ok(())
    }

    /// Seals the parameters bound for sealed columns; the others keep their value and format.
    #[allow(clippy::type_complexity)]
    fn seal_params(
        &self,
        bind: &Bind<'_>,
        statement: &Prepared,
        catalog: &catalog::DatabaseCatalog,
    ) -> Result<(Vec<i16>, Vec<Option<Vec<u8>>>), Refusal> {
        let mut formats = Vec::with_capacity(bind.params.len());
        let mut values = Vec::with_capacity(bind.params.len());
        for (index, value) in bind.params.iter().enumerate() {
            let format = bind.param_format(index);
            let seal = statement.params.get(index).copied().flatten();
            let (Some(seal), Some(value)) = (seal, value) else {
                formats.push(format);
                values.push(value.map(<[u8]>::to_vec));
                continue;
            };
            let crypto = self.protection.column(seal.column);
            let client_type = statement.client_types.get(index).copied().unwrap_or(0);
            let canonical = crypto
                .canonical_as(client_type, Format::from_code(format), value)
                .map_err(|e| Refusal {
                    sqlstate: e.sqlstate(),
                    message: e.to_string(),
                })?;
            let storage = catalog.storage(seal.column);
            let stored = if seal.compare {
                let forms = crypto
                    .match_forms(&canonical, storage)
                    .map_err(|e| Refusal {
                        sqlstate: e.sqlstate(),
                        message: e.to_string(),
                    })?;
                if seal.array {
                    plan::array_literal(&forms)
                } else {
                    single_form(forms, &crypto.name)?
                }
            } else {
                crypto.seal(&canonical, storage).map_err(|e| Refusal {
                    sqlstate: e.sqlstate(),
                    message: e.to_string(),
                })?
            };
            formats.push(0);
            values.push(Some(stored));
        }
        Ok((formats, values))
    }

    fn describe(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let (kind, name) = extended::decode_target(frame, "Describe").map_err(Self::malformed)?;
        let mut state = lock(&self.state);
        let expect = if kind == b'S' {
            Expect::DescribeStatement(state.statement(name).unwrap_or_default())
        } else {
            Expect::DescribePortal(
                state
                    .portals
                    .get(name)
                    .cloned()
                    .unwrap_or_else(empty_portal),
            )
        };
        state.expected.push_back(expect);
        out.extend_from_slice(frame);
        Ok(())
    }

    fn execute(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let (name, _limit) = extended::decode_execute(frame).map_err(Self::malformed)?;
        let portal = lock(&self.state)
            .portals
            .get(name)
            .cloned()
            .unwrap_or_else(empty_portal);
        self.start_copy(portal.statement.copy.as_ref());
        lock(&self.state)
            .expected
            .push_back(Expect::Execute(portal));
        out.extend_from_slice(frame);
        Ok(())
    }

    fn close(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let (kind, name) = extended::decode_target(frame, "Close").map_err(Self::malformed)?;
        let mut state = lock(&self.state);
        if kind == b'S' {
            state.pending_statements.remove(name);
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
        let catalog = Arc::clone(&lock(&self.state).catalog);
        self.copy_in = CopyIn::new(&self.protection, &catalog, copy);
    }
}

fn empty_portal() -> Arc<Portal> {
    Arc::new(Portal {
        statement: Arc::default(),
        result_formats: Vec::new(),
        shape: Default::default(),
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

    fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        let tag = frame[0];
        // A new statement ends any COPY; Sync, Flush, Describe and Close may arrive while a COPY
        // started by Execute is under way (the server ignores Sync and Flush in COPY mode), and
        // must not end the sealing of its rows.
        if matches!(tag, b'Q' | b'P' | b'B' | b'F') {
            self.copy_in = None;
        }
        {
            let mut state = lock(&self.state);
            if state.server_skipping {
                if tag != b'S' {
                    // The server skips it anyway (it failed an earlier message of this batch).
                    return Ok(());
                }
                state.server_skipping = false;
            }
        }
        match tag {
            b'Q' => self.query(frame, out),
            b'P' => self.parse(frame, out),
            b'B' => self.bind(frame, out),
            b'D' => self.describe(frame, out),
            b'E' => self.execute(frame, out),
            b'C' => self.close(frame, out),
            b'S' => {
                lock(&self.state).expected.push_back(Expect::Sync);
                out.extend_from_slice(frame);
                Ok(())
            }
            b'F' => {
                // A fast-path function call bypasses SQL analysis: refused, like a statement.
                extended::put_query(out, POISON.as_bytes());
                self.refuse(Refusal {
                    sqlstate: "0A000",
                    message: "pgseal refuses fast-path function calls on protected sessions".into(),
                });
                lock(&self.state).expected.push_back(Expect::Sync);
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
