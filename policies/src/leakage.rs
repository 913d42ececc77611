//! What a valid policy still reveals, stated per column and per class so that
//! `pgseal policy check` can say it: the equality a deterministic or tokenized column shows to
//! whoever reads its stored form, what a column's search tokens show, the guesses a class
//! granted `lookups` can test, the existence test a blind writer gets from a unique index, and
//! the trusted functions.

use crate::model::{SealMode, View};
use crate::policy::CompiledPolicy;
use crate::search::{DateBuckets, SearchSpec};

/// One sentence per thing the policy leaves visible, in file order: columns first, then
/// classes. Each names columns and classes, never a value.
pub fn leakage_notes(policy: &CompiledPolicy) -> Vec<String> {
    let mut notes = Vec::new();
    for column in policy.columns() {
        if let Some(spec) = &column.search {
            notes.push(search_note(&column.qualified_name(), spec));
        }
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

/// Below this many distinct values behind each search token (as estimated from the tokens
/// stored), `pgseal policy check --database-url` warns: the tokens then come close to telling
/// the database which rows hold the same item (the same name, prefix, trigram or month), the
/// frequency leak of a deterministic column.
pub const SEARCH_WARN_BELOW: f64 = 2.0;

/// What a column's search tokens show whoever reads the database.
fn search_note(name: &str, spec: &SearchSpec) -> String {
    let mut kinds = Vec::new();
    if spec.prefix > 0 {
        kinds.push(format!("its first 1 to {} characters", spec.prefix));
    }
    if spec.trigram {
        kinds.push("each run of three characters".to_string());
    }
    if spec.exact {
        kinds.push("its whole value".to_string());
    }
    if let Some(date) = spec.date {
        kinds.push(match date {
            DateBuckets::Year => "its year".to_string(),
            DateBuckets::Month => "its year and month".to_string(),
        });
    }
    format!(
        "leakage: {name} has search tokens of {} (folded: case and accents ignored), each \
         truncated to {} bits ({} tokens per kind): whoever reads the database sees which rows \
         share a token — rows with the same item always do, others by chance — and how many \
         share each, so frequent items stand out (frequency and co-occurrence analysis: \
         Naveed, Kamara, Wright 2015; Grubbs et al. 2017)",
        kinds.join(", "),
        spec.bits,
        1u64 << spec.bits
    )
}

/// How many distinct items stand behind each search token of one kind, estimated from what the
/// database holds: with `2^bits` possible tokens of which `occupied` appear, a keyed hash
/// spreading `d` distinct items fills `2^bits · (1 − e^(−d / 2^bits))` of them on average, so
/// `d ≈ −2^bits · ln(1 − occupied / 2^bits)`, and each occupied token stands for `d /
/// occupied` items. `None` when no token is stored. Every bucket occupied means at least as
/// many items as buckets: the estimate is then a lower bound (`2^bits · ln 2^bits`).
pub fn items_per_token(bits: u8, occupied: u64) -> Option<f64> {
    if occupied == 0 {
        return None;
    }
    let buckets = (1u64 << bits.min(32)) as f64;
    let filled = (occupied as f64).min(buckets);
    let fraction = filled / buckets;
    let items = if fraction >= 1.0 {
        buckets * buckets.ln()
    } else {
        -buckets * (1.0 - fraction).ln()
    };
    Some((items / filled).max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_occupied_buckets_mean_about_one_item_per_token() {
        let estimate = items_per_token(16, 100).unwrap();
        assert!((1.0..1.01).contains(&estimate), "{estimate}");
        assert_eq!(items_per_token(12, 0), None);
    }

    #[test]
    fn nearly_full_buckets_mean_many_items_per_token() {
        // 4,096 buckets, 4,000 seen: about 15,500 items, close to 4 per token.
        let estimate = items_per_token(12, 4000).unwrap();
        assert!((3.5..4.5).contains(&estimate), "{estimate}");
        let full = items_per_token(8, 256).unwrap();
        assert!(full >= 5.0, "{full}");
    }
}
