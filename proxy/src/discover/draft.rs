//! Writing discovery's findings: one report line per column, and a draft policy that
//! `pgseal policy check` accepts.
//!
//! Each sealed column of the draft gets a mode (`tokenize-nir` for NIRs, `tokenize-digits` for
//! RPPS numbers and postcodes stored as characters; `deterministic` where
//! the schema shows the column is a key or is looked up by value; `randomized` otherwise), its
//! current type as the policy's `type`, a mask fitting its kind and type, and a comment with
//! the evidence. Columns discovery is unsure of are written commented out, never dropped.

use std::fmt::Write as _;

use pgseal_policies::PlainType;
use pgseal_policies::ident::quote_qualified;

use super::{CopyOf, Evidence, Finding, Kind};

/// The policy's name of a finding's column: `schema.table.column`, quoted where needed.
pub fn qualified(finding: &Finding) -> String {
    quote_qualified(&[&finding.schema, &finding.table, &finding.column.name])
}

/// What the draft proposes for one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The mode.
    pub mode: &'static str,
    /// The declared type, or why the column's type cannot be declared.
    pub plain_type: Result<String, String>,
    /// The mask.
    pub mask: &'static str,
    /// Why this mode.
    pub why: String,
}

/// The mode, type and mask the draft proposes for a finding.
pub fn propose(finding: &Finding) -> Proposal {
    let parsed = PlainType::parse(&finding.column.storage_type);
    let plain_type = match &parsed {
        Ok(t) => Ok(policy_type_name(t)),
        Err(_) => Err(format!(
            "its type {} is not one a policy can declare",
            finding.column.storage_type
        )),
    };
    let character = matches!(
        parsed,
        Ok(PlainType::Text | PlainType::Varchar(_) | PlainType::Char(_))
    );
    let dated = matches!(
        parsed,
        Ok(PlainType::Date | PlainType::Timestamp | PlainType::Timestamptz)
    );
    let nir_fits = matches!(
        parsed,
        Ok(PlainType::Text | PlainType::Varchar(None) | PlainType::Char(15))
    ) || matches!(parsed, Ok(PlainType::Varchar(Some(n))) if n >= 15);
    let keys = finding.column.keys;
    let kind = finding.main_kind();
    let (mode, why) = if kind == Some(Kind::Nir) && nir_fits {
        (
            "tokenize-nir",
            "a NIR keeps its shape and lookups".to_string(),
        )
    } else if matches!(kind, Some(Kind::Rpps | Kind::Postcode)) && character {
        (
            "tokenize-digits",
            format!(
                "a {} keeps its digits, its type and lookups",
                kind.unwrap_or(Kind::Rpps)
            ),
        )
    } else if keys.primary || keys.unique {
        (
            "deterministic",
            "a unique index: looked up by value".to_string(),
        )
    } else if keys.foreign {
        (
            "deterministic",
            "in a foreign key: joined by value".to_string(),
        )
    } else if keys.indexed {
        ("deterministic", "indexed: looked up by value".to_string())
    } else {
        ("randomized", "no index or key uses it".to_string())
    };
    let mask = match kind {
        Some(Kind::Nir) if character => "nir",
        Some(Kind::Email) if character => "email",
        Some(Kind::Phone) if character => "phone",
        Some(Kind::FirstName | Kind::LastName) if character => "initial",
        Some(Kind::BirthDate) if character || dated => "year",
        Some(Kind::Icd10) if character => "keep-first-3",
        Some(Kind::Rpps) if character => "keep-last-3",
        Some(Kind::Postcode) if character => "keep-first-2",
        Some(Kind::CareDate) if character || dated => "year-month",
        _ => "redact",
    };
    Proposal {
        mode,
        plain_type,
        mask,
        why,
    }
}

/// The type as a policy writes it (`varchar(15)`, `timestamptz`).
fn policy_type_name(t: &PlainType) -> String {
    match t {
        PlainType::Text => "text".into(),
        PlainType::Varchar(None) => "varchar".into(),
        PlainType::Varchar(Some(n)) => format!("varchar({n})"),
        PlainType::Char(n) => format!("char({n})"),
        PlainType::Bool => "boolean".into(),
        PlainType::Int2 => "int2".into(),
        PlainType::Int4 => "int4".into(),
        PlainType::Int8 => "int8".into(),
        PlainType::Numeric(None) => "numeric".into(),
        PlainType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
        PlainType::Float4 => "float4".into(),
        PlainType::Float8 => "float8".into(),
        PlainType::Date => "date".into(),
        PlainType::Timestamp => "timestamp".into(),
        PlainType::Timestamptz => "timestamptz".into(),
        PlainType::Uuid => "uuid".into(),
        PlainType::Bytea => "bytea".into(),
        PlainType::Json => "json".into(),
        PlainType::Jsonb => "jsonb".into(),
    }
}

/// One kind's evidence in words: `NIR 100% (by name; by content: 300 of 300 sampled values,
/// 15 characters, control key valid)`. Counts and shapes only.
pub fn describe(evidence: &Evidence) -> String {
    let mut text = format!("{} {:.0}%", evidence.kind, evidence.share() * 100.0);
    let mut parts = Vec::new();
    if evidence.by_name {
        parts.push("by name".to_string());
    }
    if evidence.sampled == 0 {
        parts.push("no value sampled".to_string());
    } else if evidence.matched > 0 {
        parts.push(format!(
            "by content: {} of {} sampled values, {}",
            evidence.matched, evidence.sampled, evidence.shape
        ));
    } else {
        parts.push(format!("none of {} sampled values match", evidence.sampled));
    }
    if !evidence.confident {
        parts.push("weak".to_string());
    }
    let _ = write!(text, " ({})", parts.join("; "));
    text
}

/// The most copies described in full on a report line or in a draft's comment; the others
/// are only named.
pub const COPIES_DESCRIBED: usize = 3;

/// A finding's kinds and copies in words, one item each: its kinds, its first
/// [`COPIES_DESCRIBED`] copies, and the names of the others.
pub fn evidence_lines(finding: &Finding) -> Vec<String> {
    let mut lines: Vec<String> = finding.evidence.iter().map(describe).collect();
    lines.extend(
        finding
            .copies
            .iter()
            .take(COPIES_DESCRIBED)
            .map(CopyOf::describe),
    );
    let others: Vec<&str> = finding
        .copies
        .iter()
        .skip(COPIES_DESCRIBED)
        .map(|c| c.of.as_str())
        .collect();
    if !others.is_empty() {
        lines.push(format!("also copies of {}", others.join(", ")));
    }
    lines
}

/// A finding's kinds and copies in words, `; `-separated.
pub fn evidence_text(finding: &Finding) -> String {
    evidence_lines(finding).join("; ")
}

/// The report: one line per column where something was found.
pub fn report(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|finding| {
            let proposal = propose(finding);
            let kinds = evidence_text(finding);
            let verdict = match (&proposal.plain_type, finding.confident()) {
                (Err(why), _) => format!("not proposed: {why}"),
                (Ok(_), true) => format!("{}, mask {}", proposal.mode, proposal.mask),
                (Ok(_), false) => format!(
                    "{}, mask {} (commented out: unsure)",
                    proposal.mode, proposal.mask
                ),
            };
            format!(
                "{}: {} [{}] -> {verdict}",
                qualified(finding),
                kinds,
                finding.column.storage_type
            )
        })
        .collect()
}

/// The draft policy: every finding as a sealed column, the unsure ones commented out, a
/// default class that sees ciphertext and a class to fill in, commented out.
pub fn policy(findings: &[Finding]) -> String {
    let mut out = String::from(
        "# Draft policy written by `pgseal policy discover`.\n\
         #\n\
         # Discovery judged column names and a sample of rows: review every column before use.\n\
         # Columns it was unsure of are commented out. Randomized and deterministic columns\n\
         # must be stored as text (pgseal migrate encrypt changes their storage type).\n\
         # Check it with: pgseal policy check --policy FILE --database-url URL\n\
         \n\
         version = 1\n\
         \n\
         # --- Sealed columns -------------------------------------------------------------\n",
    );
    for finding in findings {
        let proposal = propose(finding);
        let mut block = String::new();
        let _ = writeln!(block);
        for line in evidence_lines(finding) {
            let _ = writeln!(block, "# {line}");
        }
        if let Some(copy) = finding.copies.iter().find(|c| c.confident) {
            let _ = writeln!(
                block,
                "# A copy: sealing {} alone would leave these values readable.",
                copy.of
            );
        }
        let _ = writeln!(block, "# {}: {}", proposal.mode, proposal.why);
        if finding.main_kind() == Some(Kind::BirthDate) && finding.column.text_like {
            let _ = writeln!(
                block,
                "# Dates stored as text: declare type = \"date\" if the application reads a date."
            );
        }
        let (comment, plain_type) = match (&proposal.plain_type, finding.confident()) {
            (Ok(t), true) => ("", t.clone()),
            (Ok(t), false) => ("# ", t.clone()),
            (Err(why), _) => {
                let _ = writeln!(block, "# Not proposed: {why}.");
                ("# ", finding.column.storage_type.clone())
            }
        };
        let _ = writeln!(
            block,
            "{comment}[columns.{}]",
            toml_string(&qualified(finding))
        );
        let _ = writeln!(block, "{comment}mode = \"{}\"", proposal.mode);
        let _ = writeln!(block, "{comment}type = {}", toml_string(&plain_type));
        let _ = writeln!(block, "{comment}mask = \"{}\"", proposal.mask);
        out.push_str(&block);
    }
    out.push_str(
        "\n# --- Roles in no class: ciphertext, and the strictest budget -----------------------\n\
         \n\
         [default]\n\
         view = \"ciphertext\"\n\
         \n\
         # --- Classes: who sees what (fill in your roles) ---------------------------------\n\
         #\n\
         # [classes.application]\n\
         # roles = [\"app_role\"]\n\
         # default = \"plaintext\"\n\
         #\n\
         # [classes.application.budget]\n\
         # rate = \"2000/second\"\n\
         # burst = 20_000\n\
         # action = \"alert\"\n",
    );
    out
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{ColumnSample, Keys};

    fn finding(name: &str, storage_type: &str, kind: Kind, confident: bool, keys: Keys) -> Finding {
        Finding {
            schema: "public".into(),
            table: "Patients".into(),
            column: ColumnSample {
                name: name.into(),
                storage_type: storage_type.into(),
                text_like: true,
                keys,
                ..ColumnSample::default()
            },
            evidence: vec![Evidence {
                kind,
                by_name: true,
                matched: 9,
                sampled: 10,
                shape: "a shape".into(),
                confident,
            }],
            copies: Vec::new(),
        }
    }

    #[test]
    fn modes_masks_and_types_follow_kind_and_keys() {
        let unique = Keys {
            unique: true,
            ..Keys::default()
        };
        let nir = propose(&finding(
            "nir",
            "character varying(15)",
            Kind::Nir,
            true,
            unique,
        ));
        assert_eq!(nir.mode, "tokenize-nir");
        assert_eq!(nir.mask, "nir");
        assert_eq!(nir.plain_type, Ok("varchar(15)".to_string()));
        let email = propose(&finding("email", "text", Kind::Email, true, unique));
        assert_eq!((email.mode, email.mask), ("deterministic", "email"));
        let dob = propose(&finding(
            "dob",
            "date",
            Kind::BirthDate,
            true,
            Keys::default(),
        ));
        assert_eq!((dob.mode, dob.mask), ("randomized", "year"));
        // A NIR stored as a number cannot be tokenized or masked as one.
        let number = propose(&finding("nir", "bigint", Kind::Nir, true, unique));
        assert_eq!(
            (number.mode, number.mask, number.plain_type),
            ("deterministic", "redact", Ok("int8".to_string()))
        );
        let odd = propose(&finding("x", "inet", Kind::FreeText, true, Keys::default()));
        assert!(odd.plain_type.is_err());
    }

    #[test]
    fn unsure_findings_are_commented_out_and_names_quoted() {
        let draft = policy(&[
            finding(
                "nir",
                "character varying(15)",
                Kind::Nir,
                true,
                Keys::default(),
            ),
            finding("Maybe", "text", Kind::FirstName, false, Keys::default()),
        ]);
        assert!(
            draft.contains("\n[columns.\"public.\\\"Patients\\\".nir\"]\n"),
            "{draft}"
        );
        assert!(
            draft.contains("\n# [columns.\"public.\\\"Patients\\\".\\\"Maybe\\\"\"]\n"),
            "{draft}"
        );
        assert!(draft.contains("\n[default]\nview = \"ciphertext\"\n"));
        let parsed: toml::Table = toml::from_str(&draft).expect("the draft is TOML");
        assert_eq!(parsed["version"].as_integer(), Some(1));
    }
}
