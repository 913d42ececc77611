//! What an `ILIKE` filter pgseal evaluates costs per row: the pattern read for every row (as
//! before issue 15's candidate work) against a pattern read once per result
//! ([`pgseal::evaluate::like::Pattern`]), on French last names, under the ICU root collation
//! (full case mapping) and under C (ASCII only).
//!
//! `cargo bench -p pgseal --bench like`

// criterion_group! and criterion_main! generate functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgseal::evaluate::collation::TextOrder;
use pgseal::evaluate::like::{self, Escape, Pattern};

/// Names as a search box meets them: some match `mar%`, most do not.
const NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "Marchand",
    "Marie",
    "Muller",
    "Bonnet",
    "Mercier",
    "Martinez",
    "Maréchal",
    "Étienne",
    "Ölçer",
];

fn ilike(c: &mut Criterion) {
    for (label, order) in [
        (
            "icu",
            TextOrder::icu("und").expect("the ICU root collation"),
        ),
        ("c", TextOrder::bytes()),
    ] {
        c.bench_function(&format!("ilike mar% {label}, pattern per row"), |b| {
            b.iter(|| {
                for name in NAMES {
                    black_box(like::ilike(black_box(name), "mar%", Escape::default(), &order).ok());
                }
            })
        });
        let pattern = Pattern::new("mar%", Escape::default(), Some(&order)).expect("a pattern");
        c.bench_function(&format!("ilike mar% {label}, pattern read once"), |b| {
            b.iter(|| {
                for name in NAMES {
                    black_box(pattern.is_match(black_box(name), Some(&order)).ok());
                }
            })
        });
    }
}

criterion_group!(benches, ilike);
criterion_main!(benches);
