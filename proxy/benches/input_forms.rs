//! What turning a bound value into its canonical plaintext costs, per type and input form: the
//! write path does it for every sealed parameter that is not text (dates read as PostgreSQL
//! reads them, timestamps, numbers), before sealing.
//!
//! `cargo bench -p pgseal --bench input_forms`

// criterion_group! and criterion_main! generate functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgseal::protect::values::canonical_from_text;
use pgseal_policies::PlainType;

fn canonical(c: &mut Criterion) {
    let cases: [(&str, PlainType, &str); 6] = [
        ("date iso", PlainType::Date, "1992-07-01"),
        ("date pgjdbc", PlainType::Date, "1992-07-01 +02"),
        (
            "timestamptz",
            PlainType::Timestamptz,
            "2024-03-01 09:30:00.25+01",
        ),
        (
            "timestamp pgjdbc",
            PlainType::Timestamp,
            "2024-03-01 09:30:00+01",
        ),
        ("numeric", PlainType::Numeric(None), "12345.678"),
        ("int8", PlainType::Int8, "9223372036854775807"),
    ];
    for (name, ty, text) in cases {
        c.bench_function(name, |b| {
            b.iter(|| canonical_from_text(black_box(&ty), black_box(text)))
        });
    }
}

criterion_group!(benches, canonical);
criterion_main!(benches);
