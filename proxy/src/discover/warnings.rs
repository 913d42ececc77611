//! What `pgseal policy check --database-url` says of the columns a policy leaves unsealed: a
//! warning when one holds data of a kind the policy seals elsewhere, or copies of a sealed
//! column ([`super::copies`]).
//!
//! The kinds a policy seals are read from each sealed column: its mode (`tokenize-nir` holds
//! NIRs), its mask (`email`, `phone`, `nir`, `initial` for names), its name (the detectors'
//! name hints), and, while the database still holds its plaintext, what its sampled values are.
//! Copies are compared with a sealed column's *plaintext* values only: those still stored in
//! plaintext, or, given a keyring, the sampled envelopes and tokens opened in memory
//! ([`super::opening`]). Sealed and without keys, the database holds envelopes and tokens,
//! which nothing can be compared with, and then only kinds speak (a `party_name` table of first
//! names is still a column of first names). Warnings name columns, kinds and shares: never a
//! value.

use pgseal_policies::{CompiledPolicy, Mask, SealMode, SealedColumn};

use super::detectors::{Kind, named_kinds};
use super::draft::describe;
use super::{Discovery, Finding};

/// The kinds a sealed column holds, as its policy entry and its sample say.
pub fn sealed_kinds(column: &SealedColumn, found: Option<&Finding>) -> Vec<Kind> {
    let mut kinds = named_kinds(&column.column);
    let names = kinds.contains(&Kind::FirstName) || kinds.contains(&Kind::LastName);
    if column.mode == SealMode::TokenizeNir {
        kinds.push(Kind::Nir);
    }
    match column.mask {
        Some(Mask::Nir) => kinds.push(Kind::Nir),
        Some(Mask::Email) => kinds.push(Kind::Email),
        Some(Mask::Phone) => kinds.push(Kind::Phone),
        Some(Mask::Initial) if !names => kinds.extend([Kind::FirstName, Kind::LastName]),
        _ => {}
    }
    if let Some(finding) = found {
        kinds.extend(
            finding
                .evidence
                .iter()
                .filter(|e| e.confident)
                .map(|e| e.kind),
        );
    }
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Whether a finding is the policy's sealed column.
fn is(finding: &Finding, column: &SealedColumn) -> bool {
    finding.schema == column.schema
        && finding.table == column.table
        && finding.column.name == column.column
}

/// One warning per unsealed column holding a kind the policy seals, or copies of a sealed
/// column: `warning: S.T.C is not sealed but holds …, like sealed S.T.X`.
pub fn warnings(policy: &CompiledPolicy, discovery: &Discovery) -> Vec<String> {
    let sealed: Vec<(&SealedColumn, Vec<Kind>)> = policy
        .columns()
        .iter()
        .map(|column| {
            let found = discovery.findings.iter().find(|f| is(f, column));
            (column, sealed_kinds(column, found))
        })
        .collect();
    let mut out = Vec::new();
    for finding in &discovery.findings {
        if sealed.iter().any(|(column, _)| is(finding, column)) {
            continue;
        }
        let mut reasons = Vec::new();
        for evidence in finding.evidence.iter().filter(|e| e.confident) {
            if let Some((column, _)) = sealed
                .iter()
                .find(|(_, kinds)| kinds.contains(&evidence.kind))
            {
                reasons.push(format!(
                    "{}, a kind the policy seals in {}",
                    describe(evidence),
                    column.qualified_name()
                ));
            }
        }
        for copy in finding.copies.iter().filter(|c| c.confident) {
            if sealed
                .iter()
                .any(|(column, _)| column.qualified_name() == copy.of)
            {
                reasons.push(format!("{}, a sealed column", copy.describe()));
            }
        }
        if !reasons.is_empty() {
            out.push(format!(
                "warning: {} is not sealed but holds {}",
                super::draft::qualified(finding),
                reasons.join("; ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::copies::{Match, Via};
    use crate::discover::{ColumnSample, CopyOf, Evidence};

    const POLICY: &str = r#"version = 1

[columns."crm.person.nir"]
mode = "tokenize-nir"
type = "varchar(15)"

[columns."crm.person.label"]
mode = "deterministic"
type = "text"
mask = "initial"

[columns."crm.contact.value"]
mode = "deterministic"
type = "text"
"#;

    fn finding(table: &str, column: &str, kind: Option<Kind>, copy_of: Option<&str>) -> Finding {
        Finding {
            schema: "crm".into(),
            table: table.into(),
            column: ColumnSample {
                name: column.into(),
                storage_type: "text".into(),
                text_like: true,
                ..ColumnSample::default()
            },
            evidence: kind
                .map(|kind| Evidence {
                    kind,
                    by_name: false,
                    matched: 40,
                    sampled: 40,
                    shape: "a shape".into(),
                    confident: true,
                })
                .into_iter()
                .collect(),
            copies: copy_of
                .map(|of| CopyOf {
                    of: of.into(),
                    source_kind: None,
                    how: Match::Normalised,
                    via: Via::SameRow,
                    matched: 40,
                    compared: 40,
                    confident: true,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn kinds_of_sealed_columns_come_from_mode_mask_and_name() {
        let policy = CompiledPolicy::from_toml("p.toml", POLICY).expect("a valid policy");
        let kinds: Vec<Vec<Kind>> = policy
            .columns()
            .iter()
            .map(|c| sealed_kinds(c, None))
            .collect();
        assert_eq!(kinds[0], [Kind::Nir]);
        // `label` says nothing the hints know; the `initial` mask says a name.
        assert_eq!(kinds[1], [Kind::FirstName, Kind::LastName]);
        assert!(kinds[2].is_empty());
        // Its plaintext sample says what `value` holds.
        let sampled = finding("contact", "value", Some(Kind::Email), None);
        assert_eq!(
            sealed_kinds(&policy.columns()[2], Some(&sampled)),
            [Kind::Email]
        );
    }

    #[test]
    fn unsealed_columns_holding_sealed_kinds_or_copies_are_warned_about() {
        let policy = CompiledPolicy::from_toml("p.toml", POLICY).expect("a valid policy");
        let discovery = Discovery {
            findings: vec![
                finding("person", "nir", Some(Kind::Nir), None),
                finding("party_name", "given", Some(Kind::FirstName), None),
                finding("contact", "compact", None, Some("crm.contact.value")),
                finding("contact", "other", None, Some("crm.elsewhere.value")),
                finding("visit", "ward_phone", Some(Kind::Phone), None),
            ],
            ..Discovery::default()
        };
        let warnings = warnings(&policy, &discovery);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "warning: crm.party_name.given is not sealed but holds first name 100%"
            ) && warnings[0].ends_with("a kind the policy seals in crm.person.label"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with(
                "warning: crm.contact.compact is not sealed but holds copy of crm.contact.value \
                 (normalised) 100%"
            ) && warnings[1].ends_with("a sealed column"),
            "{}",
            warnings[1]
        );
    }
}
