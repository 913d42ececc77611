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
