//! What turning a bound value into its canonical plaintext costs, per type and input form: the
//! write path does it for every sealed parameter that is not text (dates read as PostgreSQL
//! reads them, timestamps, numbers), before sealing; and what a text result of a sealed date or
//! time costs when the session prints in another style or zone than the canonical ISO in UTC.
//!
//! `cargo bench -p pgseal --bench input_forms`

// criterion_group! and criterion_main! generate functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgseal::protect::date_settings::DateSettings;
use pgseal::protect::values::{Format, canonical_from_text, wire_from_canonical};
use pgseal_policies::PlainType;

/// A French session: day first, Paris time.
fn paris() -> DateSettings {
    DateSettings::reported("SQL, DMY", "Europe/Paris")
}

fn canonical(c: &mut Criterion) {
    let utc = DateSettings::canonical();
    let paris = paris();
    let cases: [(&str, PlainType, &str, &DateSettings); 8] = [
        ("date iso", PlainType::Date, "1992-07-01", utc),
        ("date pgjdbc", PlainType::Date, "1992-07-01 +02", utc),
        ("date day first", PlainType::Date, "01/07/1992", &paris),
        (
            "timestamptz",
            PlainType::Timestamptz,
            "2024-03-01 09:30:00.25+01",
            utc,
        ),
        (
            "timestamptz session zone",
            PlainType::Timestamptz,
            "2024-03-01 09:30:00.25",
            &paris,
        ),
        (
            "timestamp pgjdbc",
            PlainType::Timestamp,
            "2024-03-01 09:30:00+01",
            utc,
        ),
        ("numeric", PlainType::Numeric(None), "12345.678", utc),
        ("int8", PlainType::Int8, "9223372036854775807", utc),
    ];
    for (name, ty, text, dates) in cases {
        c.bench_function(name, |b| {
            b.iter(|| canonical_from_text(black_box(&ty), black_box(text), dates))
        });
    }
}

fn printed(c: &mut Criterion) {
    let paris = paris();
    for (name, ty, canonical, dates) in [
        (
            "print timestamptz canonical",
            PlainType::Timestamptz,
            "2024-03-01 08:30:00.25+00",
            DateSettings::canonical(),
        ),
        (
            "print timestamptz paris sql",
            PlainType::Timestamptz,
            "2024-03-01 08:30:00.25+00",
            &paris,
        ),
        (
            "print date paris sql",
            PlainType::Date,
            "1992-07-01",
            &paris,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                wire_from_canonical(
                    black_box(&ty),
                    Format::Text,
                    black_box(canonical.as_bytes()),
                    dates,
                )
            })
        });
    }
}

criterion_group!(benches, canonical, printed);
criterion_main!(benches);
