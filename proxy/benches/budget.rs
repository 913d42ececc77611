//! What charging one row to an export budget costs on the hot path (in memory): the proxy calls
//! `Account::take(1)` once per row of a result carrying sealed columns.
//!
//! `cargo bench -p pgseal --bench budget`

// criterion_group! and criterion_main! generate functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pgseal::budget::{Budgets, MonotonicClock};
use pgseal_policies::CompiledPolicy;

fn take(c: &mut Criterion) {
    let policy = CompiledPolicy::from_toml(
        "bench.toml",
        r#"
[classes.app]
roles = ["ehr_app"]
[classes.app.budget]
rate = "1000000000/second"
burst = 1000000000
per_hour = 100000000000
per_day = 100000000000
[classes.app.end_user_budget]
rate = "1000000000/second"
burst = 1000000000
"#,
    )
    .expect("a valid policy");
    let budgets = Budgets::in_memory(Arc::new(policy), MonotonicClock::shared());
    let role = budgets.account("ehr_app", None);
    let end_user = budgets.account("ehr_app", Some("dr.martin"));
    c.bench_function("take(1), role", |b| {
        b.iter(|| black_box(role.take(black_box(1))))
    });
    c.bench_function("take(1), role + end user", |b| {
        b.iter(|| black_box(end_user.take(black_box(1))))
    });
}

criterion_group!(benches, take);
criterion_main!(benches);
