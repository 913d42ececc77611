//! `COPY`: which table and columns, which way, and the data format, so the session can seal
//! (`FROM STDIN`) or render (`TO STDOUT`) the fields of each data row.
//!
//! - `COPY t [(cols)] FROM STDIN` / `TO STDOUT`, with options in the modern form
//!   (`WITH (FORMAT csv, DELIMITER ';', NULL '', HEADER, QUOTE '"', ESCAPE '\', ENCODING 'UTF8')`)
//!   or the legacy one (`WITH CSV HEADER`, `BINARY`, `DELIMITER AS ';'`, `NULL AS ''`).
//!   `FORCE_QUOTE`, `FORCE_NOT_NULL`, `FORCE_NULL` and `FREEZE` change nothing for sealing.
//! - `COPY (query) TO STDOUT`: the query is analysed as a `SELECT` (reads, refusals); no copy
//!   plan: a COPY row carries no column origin, so its values leave as stored.
//! - `COPY … FORMAT binary` on a sealed table is refused: pgseal transforms text and CSV rows
//!   only.
//! - `COPY` to or from a server file or a program: refused on every protected session (it runs
//!   outside pgseal: a program's command may read sealed tables unseen).
//! - Data inline after `COPY … FROM STDIN;` in the same query text is refused: PostgreSQL
//!   would take those lines as SQL, which the analyzer did not see.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use super::names::{fold, table_ref};
use super::plan::{CopyDirection, CopyFormat, CopyPlan, StatementKind, TableRef};
use super::planner::Planner;

impl<'a> Planner<'a> {
    /// A `COPY` statement: its kind and, for STDIN/STDOUT, its copy plan.
    pub fn copy(&mut self, statement: &'a Statement) -> (StatementKind, Option<CopyPlan>) {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            payload,
        } = statement
        else {
            return (StatementKind::Other, None);
        };
        let direction = match (target, *to) {
            (CopyTarget::Stdin, false) => Some(CopyDirection::From),
            (CopyTarget::Stdout, true) => Some(CopyDirection::To),
            _ => None,
        };
        let mut plan = CopyPlan {
            table: TableRef {
                schema: String::new(),
                table: String::new(),
            },
            columns: None,
            fields: None,
            direction: direction.unwrap_or(CopyDirection::To),
            format: CopyFormat::Text,
            delimiter: None,
            null: None,
            header: false,
            quote: None,
            escape: None,
            encoding: None,
            forces: false,
        };
        self.copy_options(&mut plan, options, legacy_options);
        if direction.is_none() {
            // A server file or a program runs outside pgseal: `COPY t FROM PROGRAM 'psql -c
            // "copy patients to stdout"'` names no sealed table where pgseal can see it.
            self.refuse_unanalysable(
                None,
                "pgseal refuses COPY to or from a server file or a program on protected \
                 sessions: what it reads or writes escapes the policy, budgets and audit; use \
                 COPY … FROM STDIN / TO STDOUT"
                    .into(),
            );
        }
        if payload.is_some() {
            self.refuse_unanalysable(
                None,
                "COPY … FROM STDIN followed by inline data in the same query text: PostgreSQL \
                 reads those lines as SQL; send the rows as COPY data"
                    .into(),
            );
        }
        match source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let Some(table) = table_ref(table_name) else {
                    self.opaque("COPY of this table name", &table_name.to_string());
                    return (StatementKind::Other, None);
                };
                self.table_seen(&table);
                let sealed = self.names.is_sealed(&table);
                let ids = if columns.is_empty() {
                    self.names
                        .sealed_columns(&table)
                        .into_iter()
                        .map(|(_, id)| id)
                        .collect::<Vec<_>>()
                } else {
                    let names: Vec<String> = columns.iter().map(fold).collect();
                    let fields: Vec<_> =
                        names.iter().map(|c| self.names.column(&table, c)).collect();
                    plan.columns = Some(names);
                    let ids = fields.iter().flatten().copied().collect();
                    plan.fields = Some(fields);
                    ids
                };
                match direction {
                    Some(CopyDirection::From) | None if !*to => {
                        ids.iter().for_each(|&id| self.write(id));
                    }
                    _ => self.read(&ids),
                }
                if sealed && plan.format == CopyFormat::Binary {
                    self.refuse(
                        None,
                        super::plan::RefusalKind::Unsupported,
                        format!(
                            "COPY … (FORMAT binary) on sealed table {table}: pgseal transforms \
                             text and CSV data only"
                        ),
                    );
                }
                plan.table = table;
            }
            CopySource::Query(query) => {
                let outputs = self.query(query);
                if plan.format == CopyFormat::Binary {
                    if let Some(&id) = outputs.all_sealed().first() {
                        self.refuse_op(id, "COPY (…) TO STDOUT (FORMAT binary)");
                    }
                }
                let kind = match direction {
                    Some(CopyDirection::To) => StatementKind::CopyTo,
                    _ => StatementKind::Other,
                };
                return (kind, None);
            }
        }
        match direction {
            Some(CopyDirection::From) => (StatementKind::CopyFrom, Some(plan)),
            Some(CopyDirection::To) => (StatementKind::CopyTo, Some(plan)),
            None => (StatementKind::Other, None),
        }
    }

    fn copy_options(
        &mut self,
        plan: &mut CopyPlan,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) {
        for option in options {
            match option {
                CopyOption::Format(name) => match fold(name).as_str() {
                    "text" => plan.format = CopyFormat::Text,
                    "csv" => plan.format = CopyFormat::Csv,
                    "binary" => plan.format = CopyFormat::Binary,
                    other => self.refuse_unanalysable(None, format!("unknown COPY format {other}")),
                },
                CopyOption::Delimiter(c) => plan.delimiter = Some(*c),
                CopyOption::Null(s) => plan.null = Some(s.clone()),
                CopyOption::Header(h) => plan.header = *h,
                CopyOption::Quote(c) => plan.quote = Some(*c),
                CopyOption::Escape(c) => plan.escape = Some(*c),
                CopyOption::Encoding(e) => plan.encoding = Some(e.clone()),
                CopyOption::Freeze(_) => {}
                CopyOption::ForceQuote(_)
                | CopyOption::ForceNotNull(_)
                | CopyOption::ForceNull(_) => plan.forces = true,
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => plan.format = CopyFormat::Binary,
                CopyLegacyOption::Delimiter(c) => plan.delimiter = Some(*c),
                CopyLegacyOption::Null(s) => plan.null = Some(s.clone()),
                CopyLegacyOption::Header => plan.header = true,
                CopyLegacyOption::Csv(csv) => {
                    plan.format = CopyFormat::Csv;
                    for o in csv {
                        match o {
                            CopyLegacyCsvOption::Header => plan.header = true,
                            CopyLegacyCsvOption::Quote(c) => plan.quote = Some(*c),
                            CopyLegacyCsvOption::Escape(c) => plan.escape = Some(*c),
                            CopyLegacyCsvOption::ForceQuote(_)
                            | CopyLegacyCsvOption::ForceNotNull(_) => plan.forces = true,
                        }
                    }
                }
                other => self
                    .refuse_unanalysable(None, format!("COPY option {other} is not PostgreSQL's")),
            }
        }
    }
}
