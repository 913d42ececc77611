//! Functions that read data the statement does not show: refused on every protected session.
//!
//! pgseal sees what a statement reads by walking its text. A few functions take SQL as a
//! *string*, or a relation, schema or database by *name*, and read it server-side:
//! `SELECT query_to_xml('select * from patients', true, false, '')` returns every patient in
//! one value, and nothing in the statement's syntax says that a sealed table was read. Its rows
//! would escape the role's view (denied columns and masks apply to result columns, which such a
//! value is not — sealed values inside it stay ciphertext, but unsealed ones and denied
//! columns' ciphertext come out), the export budget and the audit trail. pgseal cannot analyse
//! the text (it may be computed: `'select * from pat' || 'ients'`), so it refuses the call,
//! wherever it stands in a statement and whether or not the statement names a sealed table.
//!
//! The list ([`REFUSED`]), by reason ([`Why`]):
//!
//! - **SQL given as text** ([`Why::SqlText`]): `query_to_xml`, `query_to_xmlschema`,
//!   `query_to_xml_and_xmlschema`; `ts_stat` (its first argument is a query); `ts_rewrite` (its
//!   two-argument form runs a query; the three-argument form, over `tsquery` values only, is
//!   refused too, to keep the rule a rule of names); `pg_background_launch` (extension
//!   pg_background: runs the text in a background worker); pg_cron's `cron.schedule`,
//!   `cron.schedule_in_database` and `cron.alter_job` (run the text later, in a session pgseal
//!   never sees; matched only when qualified with `cron`, the schema pg_cron requires, since
//!   `schedule` is a common name and pgseal assumes the default `search_path`).
//! - **Another connection** ([`Why::OtherConnection`]): the dblink extension — `dblink`,
//!   `dblink_exec`, `dblink_open`, `dblink_fetch`, `dblink_close`, `dblink_send_query`,
//!   `dblink_get_result`, `dblink_connect`, `dblink_connect_u`, `dblink_disconnect`,
//!   `dblink_cancel_query`, `dblink_is_busy`, `dblink_get_connections`,
//!   `dblink_error_message`, `dblink_get_notify`, `dblink_get_pkey`, `dblink_current_query`,
//!   and `dblink_build_sql_insert`/`_update`/`_delete` (these read a row of a relation named by
//!   a string and write its values into the SQL they return) — and, failing closed, any other
//!   name starting with `dblink_`. The whole family is refused: connecting, fetching and
//!   running are all steps of reading through a connection pgseal does not stand on.
//! - **Whole relations, schemas, databases or a cursor's rows in one value**
//!   ([`Why::Dump`]): `table_to_xml`, `table_to_xmlschema`, `table_to_xml_and_xmlschema`
//!   (a `regclass`: `'patients'::regclass` needs no table syntax), `schema_to_xml`,
//!   `schema_to_xmlschema`, `schema_to_xml_and_xmlschema`, `database_to_xml`,
//!   `database_to_xmlschema`, `database_to_xml_and_xmlschema`, `cursor_to_xml` and
//!   `cursor_to_xmlschema` (a cursor's rows in one value, not through `FETCH`, which is where
//!   pgseal charges cursors); pageinspect's `get_raw_page` and `bt_page_items` (the stored
//!   bytes of a relation or index named by a string; the rest of pageinspect decodes what
//!   these return). The `*_xmlschema` forms return only a schema, but run or name the same
//!   thing: refusing them keeps one rule.
//! - **Server files** ([`Why::ServerFiles`]): `pg_read_file`, `pg_read_binary_file` and
//!   server-side `lo_import` read any file the server can, a table's data files included (the
//!   stored form of every row, outside budgets and audit).
//! - **The change stream** ([`Why::ChangeStream`]): `pg_logical_slot_get_changes`,
//!   `pg_logical_slot_peek_changes` and their `_binary_` forms return the rows written to every
//!   table since a slot was created.
//!
//! Considered and left out, because they return no row of any table:
//!
//! - `pg_ls_dir`, `pg_ls_logdir`, `pg_ls_waldir`, `pg_ls_tmpdir`, `pg_ls_archive_statusdir`,
//!   `pg_stat_file`: file names, sizes and dates, never contents.
//! - `lo_export` and the other `lo_*`/`lo*` functions: they read and write large objects,
//!   which are not tables and which pgseal does not seal; `lo_export` writes a large object to
//!   a server file, it reads no table.
//! - pgstattuple, pg_visibility, pg_freespacemap, amcheck, `pg_relation_size` and the like:
//!   statistics about a relation named by `regclass`, not its values.
//! - `pg_get_viewdef`, `pg_get_functiondef`, `pg_stat_activity`, `pg_stat_statements`:
//!   definitions and statement texts (pgseal seals literals before the server sees them).
//!
//! What remains, documented in the README: functions and views created directly on PostgreSQL
//! by their owner that read sealed tables (pgseal refuses creating them through itself). Their
//! results carry no column origin, so sealed values come back as stored (ciphertext), but their
//! rows escape budgets and the audit trail.
//!
//! Matching follows PostgreSQL's reading of names: unquoted identifiers fold to lower case,
//! quoted ones are taken as written, and a schema qualifier is accepted whatever it is
//! (`pg_catalog.query_to_xml`, `public.dblink`, `"QUERY_TO_XML"` is another function), except
//! for entries that name the schema they must be called through. Two nets catch a call: the
//! expression and `FROM`-clause walkers (`expr`, `query`) check every function they meet, and
//! a scan of the statement's tokens finds `name (` wherever the analyzer does not walk (column
//! `DEFAULT`s in DDL, `CALL`, constructs it only scans). The scan skips statements that only
//! name functions without calling them (`GRANT`/`REVOKE … ON FUNCTION`, `DROP`, `COMMENT`,
//! `ALTER FUNCTION`), so revoking these functions through pgseal works; elsewhere it may
//! refuse a table that happens to bear one of these names (`INSERT INTO dblink (…)`): the
//! safe side.

use std::ops::Range;

use sqlparser::ast::{ObjectName, ObjectNamePart, Statement};
use sqlparser::tokenizer::{Token, Word};

use super::names::{fold, fold_str, truncate_identifier};
use super::planner::Planner;

/// Why a listed function is refused; each reason gives the message's explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Why {
    /// It runs SQL given as text (now, later, or in a background worker).
    SqlText,
    /// It runs SQL on another connection (dblink), which pgseal does not stand on.
    OtherConnection,
    /// It returns whole tables, schemas, databases, a cursor's rows or a relation's stored
    /// pages, named by an argument, in one value.
    Dump,
    /// It reads files on the database server, tables' data files included.
    ServerFiles,
    /// It returns the rows written to tables (logical decoding).
    ChangeStream,
}

impl Why {
    /// The explanation given in the refusal message.
    pub fn explanation(self) -> &'static str {
        match self {
            Why::SqlText => "it runs SQL given as text, which pgseal cannot see",
            Why::OtherConnection => {
                "it runs SQL given as text on another connection, which pgseal does not stand on"
            }
            Why::Dump => {
                "it returns whole tables, schemas, databases or a cursor's rows named by its \
                 arguments"
            }
            Why::ServerFiles => {
                "it reads files on the database server, tables' data files included"
            }
            Why::ChangeStream => "it returns the rows written to tables (logical decoding)",
        }
    }
}

/// A function pgseal refuses on protected sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its name, as the catalog holds it (lower case).
    pub name: &'static str,
    /// The schema a call must name to match (`cron.schedule`); `None`: any schema, or none.
    pub schema: Option<&'static str>,
    /// Why it is refused.
    pub why: Why,
}

const fn any(name: &'static str, why: Why) -> Refused {
    Refused {
        name,
        schema: None,
        why,
    }
}

const fn qualified(schema: &'static str, name: &'static str, why: Why) -> Refused {
    Refused {
        name,
        schema: Some(schema),
        why,
    }
}

/// Names starting with this are refused as the dblink family even when not listed.
pub const DBLINK_PREFIX: &str = "dblink_";

/// The functions refused on protected sessions (see the module documentation for why each is
/// here, and for those left out).
pub const REFUSED: &[Refused] = &[
    // SQL given as text.
    any("query_to_xml", Why::SqlText),
    any("query_to_xmlschema", Why::SqlText),
    any("query_to_xml_and_xmlschema", Why::SqlText),
    any("ts_stat", Why::SqlText),
    any("ts_rewrite", Why::SqlText),
    any("pg_background_launch", Why::SqlText),
    qualified("cron", "schedule", Why::SqlText),
    qualified("cron", "schedule_in_database", Why::SqlText),
    qualified("cron", "alter_job", Why::SqlText),
    // dblink.
    any("dblink", Why::OtherConnection),
    any("dblink_exec", Why::OtherConnection),
    any("dblink_open", Why::OtherConnection),
    any("dblink_fetch", Why::OtherConnection),
    any("dblink_close", Why::OtherConnection),
    any("dblink_send_query", Why::OtherConnection),
    any("dblink_get_result", Why::OtherConnection),
    any("dblink_connect", Why::OtherConnection),
    any("dblink_connect_u", Why::OtherConnection),
    any("dblink_disconnect", Why::OtherConnection),
    any("dblink_cancel_query", Why::OtherConnection),
    any("dblink_is_busy", Why::OtherConnection),
    any("dblink_get_connections", Why::OtherConnection),
    any("dblink_error_message", Why::OtherConnection),
    any("dblink_get_notify", Why::OtherConnection),
    any("dblink_get_pkey", Why::OtherConnection),
    any("dblink_current_query", Why::OtherConnection),
    any("dblink_build_sql_insert", Why::OtherConnection),
    any("dblink_build_sql_update", Why::OtherConnection),
    any("dblink_build_sql_delete", Why::OtherConnection),
    // Whole relations, schemas, databases, cursors, pages.
    any("table_to_xml", Why::Dump),
    any("table_to_xmlschema", Why::Dump),
    any("table_to_xml_and_xmlschema", Why::Dump),
    any("schema_to_xml", Why::Dump),
    any("schema_to_xmlschema", Why::Dump),
    any("schema_to_xml_and_xmlschema", Why::Dump),
    any("database_to_xml", Why::Dump),
    any("database_to_xmlschema", Why::Dump),
    any("database_to_xml_and_xmlschema", Why::Dump),
    any("cursor_to_xml", Why::Dump),
    any("cursor_to_xmlschema", Why::Dump),
    any("get_raw_page", Why::Dump),
    any("bt_page_items", Why::Dump),
    // Server files.
    any("pg_read_file", Why::ServerFiles),
    any("pg_read_binary_file", Why::ServerFiles),
    any("lo_import", Why::ServerFiles),
    // Logical decoding.
    any("pg_logical_slot_get_changes", Why::ChangeStream),
    any("pg_logical_slot_peek_changes", Why::ChangeStream),
    any("pg_logical_slot_get_binary_changes", Why::ChangeStream),
    any("pg_logical_slot_peek_binary_changes", Why::ChangeStream),
];

/// A call of a refused function, as found in a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The function's name as listed (with its required schema when it has one; `dblink_*`
    /// for an unlisted member of the dblink family), for messages.
    pub function: String,
    /// Why it is refused.
    pub why: Why,
}

impl Found {
    /// The refusal message: the function and why, never any SQL text or value.
    pub fn reason(&self) -> String {
        format!(
            "pgseal refuses {}() on protected sessions: {}, so what it reads would escape the \
             role's view, export budgets and the audit trail",
            self.function,
            self.why.explanation()
        )
    }
}

/// The refused function a call designates, from its folded name parts (`["pg_catalog",
/// "query_to_xml"]`, `["dblink"]`).
pub fn lookup(parts: &[String]) -> Option<Found> {
    let (name, qualifiers) = parts.split_last()?;
    let schema = qualifiers.last().map(String::as_str);
    if let Some(entry) = REFUSED
        .iter()
        .find(|e| e.name == name && (e.schema.is_none() || e.schema == schema))
    {
        let function = match entry.schema {
            Some(schema) => format!("{schema}.{}", entry.name),
            None => entry.name.to_string(),
        };
        return Some(Found {
            function,
            why: entry.why,
        });
    }
    // Named as the family, not as written: a quoted name may hold any text.
    name.starts_with(DBLINK_PREFIX).then(|| Found {
        function: format!("{DBLINK_PREFIX}*"),
        why: Why::OtherConnection,
    })
}

/// The refused function a text names anywhere — as an identifier, in a dotted name, or inside
/// a string literal — for text pgseal cannot parse. Over-reports (a mere mention is enough),
/// which is the safe side for text that is refused or forwarded unseen.
pub fn named_in(text: &str) -> Option<Found> {
    super::identifiers(text).iter().find_map(|chain| {
        (1..=chain.len()).find_map(|end| {
            let start = end.saturating_sub(2);
            chain.get(start..end).and_then(lookup)
        })
    })
}

/// The folded parts of a function's name; a part that is itself a function call (a dialect
/// feature PostgreSQL does not have) is read by its name.
fn function_name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => fold(ident),
            ObjectNamePart::Function(function) => fold(&function.name),
        })
        .collect()
}

/// A word token as the catalog holds it: folded unless quoted.
fn fold_word(word: &Word) -> String {
    if word.quote_style.is_some() {
        truncate_identifier(word.value.clone())
    } else {
        fold_str(&word.value)
    }
}

/// Whether a statement only names functions (privileges, comments, drops, renames) without
/// calling them: the token scan skips it.
fn names_functions_only(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::Drop { .. }
            | Statement::DropFunction(_)
            | Statement::DropProcedure { .. }
            | Statement::Comment { .. }
            | Statement::AlterFunction(_)
    )
}

impl Planner<'_> {
    /// Refuses a call of a refused function named `name`; true when it was one.
    pub(crate) fn refuse_listed_function(&mut self, name: &ObjectName) -> bool {
        match self.untrusted(&function_name_parts(name)) {
            Some(found) => {
                self.refuse_unanalysable(None, found.reason());
                true
            }
            None => false,
        }
    }

    /// The refused function `parts` designate, unless the policy trusts it by name
    /// (`trusted_functions`).
    fn untrusted(&self, parts: &[String]) -> Option<Found> {
        let found = lookup(parts)?;
        // Trusted by the name the list gives it (`cron.schedule` for pg_cron's, which the
        // bare `schedule` does not designate), as the policy writes it.
        (!self.names.policy.trusts_function(&found.function)).then_some(found)
    }

    /// Refuses every call of a refused function in the statement's tokens (`name (`, possibly
    /// `schema . name (`): the net under the walkers, for the parts of statements they do not
    /// walk.
    pub(crate) fn refuse_listed_calls(&mut self, statement: &Statement, span: &Range<usize>) {
        if names_functions_only(statement) {
            return;
        }
        let tokens: Vec<&Token> = self
            .src
            .tokens()
            .iter()
            .filter(|t| t.range.start >= span.start && t.range.end <= span.end)
            .map(|t| &t.token)
            .collect();
        let mut found = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            let Token::Word(word) = token else {
                continue;
            };
            if tokens.get(i + 1) != Some(&&Token::LParen) {
                continue;
            }
            let mut parts = vec![fold_word(word)];
            if i >= 2
                && tokens[i - 1] == &Token::Period
                && let Token::Word(schema) = tokens[i - 2]
            {
                parts.insert(0, fold_word(schema));
            }
            found.extend(self.untrusted(&parts));
        }
        for found in found {
            self.refuse_unanalysable(None, found.reason());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_match_with_any_schema_unless_one_is_required() {
        assert_eq!(
            lookup(&parts(&["pg_catalog", "query_to_xml"])).map(|f| f.why),
            Some(Why::SqlText)
        );
        assert!(lookup(&parts(&["dblink"])).is_some());
        assert!(lookup(&parts(&["public", "dblink_exec"])).is_some());
        assert_eq!(
            lookup(&parts(&["dblink_something_new"])).map(|f| f.function),
            Some("dblink_*".to_string())
        );
        assert!(lookup(&parts(&["cron", "schedule"])).is_some());
        assert!(lookup(&parts(&["schedule"])).is_none());
        assert!(lookup(&parts(&["lower"])).is_none());
        assert!(lookup(&parts(&["QUERY_TO_XML"])).is_none());
        assert!(lookup(&[]).is_none());
    }

    #[test]
    fn every_entry_is_lower_case_and_listed_once() {
        for (i, entry) in REFUSED.iter().enumerate() {
            assert_eq!(entry.name, entry.name.to_ascii_lowercase());
            assert!(
                !REFUSED[..i].iter().any(|e| e.name == entry.name),
                "{} listed twice",
                entry.name
            );
        }
    }

    #[test]
    fn texts_name_functions_in_identifiers_and_strings() {
        assert!(named_in("SELECT Query_To_Xml('x', true, false, '')").is_some());
        assert!(named_in("select pg_catalog . table_to_xml(").is_some());
        assert!(named_in("SELECT 1 WINDOW w AS (); SELECT cron.schedule('x')").is_some());
        assert!(named_in("SELECT schedule('x')").is_none());
        assert!(named_in("SELECT lower(city) FROM patients").is_none());
    }

    #[test]
    fn reasons_name_the_function_and_why() {
        let found = lookup(&parts(&["table_to_xml"])).unwrap();
        let reason = found.reason();
        assert!(reason.contains("table_to_xml()"));
        assert!(reason.contains("budgets"));
    }
}
