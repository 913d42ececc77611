//! What a valid policy still reveals, stated per column and per class so that
//! `pgseal policy check` can say it: the equality a deterministic or tokenized column shows to
//! whoever reads its stored form, the guesses a class granted `lookups` can test, the
//! existence test a blind writer gets from a unique index, and the trusted functions.

use crate::model::{SealMode, View};
use crate::policy::CompiledPolicy;

/// One sentence per thing the policy leaves visible, in file order: columns first, then
/// classes. Each names columns and classes, never a value.
pub fn leakage_notes(policy: &CompiledPolicy) -> Vec<String> {
    let mut notes = Vec::new();
    for column in policy.columns() {
        let what = match column.mode {
            SealMode::Randomized => continue,
            SealMode::Deterministic => "deterministic",
            SealMode::TokenizeNir | SealMode::TokenizeDigits | SealMode::TokenizeAlnum => {
                "tokenized"
            }
            SealMode::Pseudonym => "pseudonymized",
        };
        notes.push(format!(
            "leakage: {} is {what}: equal values are stored equal, so whoever reads the \
             database, a backup or the column's ciphertext sees which rows share a value \
             (frequencies)",
            column.qualified_name()
        ));
    }
    for class in policy.classes() {
        for column in policy.columns() {
            let i = column.id.index();
            let name = column.qualified_name();
            if class.lookups[i] {
                notes.push(format!(
                    "leakage: class {} may look up {name} by value while seeing it as {}: each \
                     statement tests a guess, and a guess that matches nothing costs no export \
                     budget",
                    class.name,
                    class.views[i].name()
                ));
            }
            if class.blind_writes[i] {
                notes.push(format!(
                    "leakage: class {} writes {name} blindly: where a unique index covers it, a \
                     write tells the class whether the value is already stored (unique \
                     violation)",
                    class.name
                ));
            }
            if class.views[i] == View::Pseudonym && column.mode != SealMode::Pseudonym {
                notes.push(format!(
                    "leakage: class {} sees {name} as pseudonyms: equal values give equal \
                     pseudonyms (frequencies)",
                    class.name
                ));
            }
        }
    }
    for function in &policy.trusted_functions {
        notes.push(format!(
            "leakage: function {function} is trusted: what it reads escapes every role's view, \
             export budget and the audit trail"
        ));
    }
    notes
}
