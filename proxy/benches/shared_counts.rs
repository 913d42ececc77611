//! What a count written from two cores costs (issue 19): the statement counter and the
//! reference counts a session bumps for every statement, while a session on the other core
//! bumps the same ones. Each case runs with a second thread doing the same, to its own copy
//! (`alone`) or to the same one (`shared`):
//!
//! - `arc clone+drop`: an `Arc` clone and drop, as of the database's catalog or of a statement
//!   record every session holds;
//! - `atomic add`: one `fetch_add` on a single atomic (the counters before issue 19);
//! - `Counter::inc, shared`: pgseal's counter, whose parts the two threads take in turn.
//!
//! `cargo bench -p pgseal --bench shared_counts`

// criterion_group! and criterion_main! generate functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

use criterion::{Criterion, criterion_group, criterion_main};
use pgseal::admin::Counter;

/// A thread doing `work` over and over until the returned flag is set.
fn beside<T: Send + 'static>(value: T, work: fn(&T)) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let thread = {
        let (stop, started) = (Arc::clone(&stop), Arc::clone(&started));
        std::thread::spawn(move || {
            started.wait();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    work(&value);
                }
            }
        })
    };
    started.wait();
    (stop, thread)
}

/// Benchmarks `work` on `mine` while another thread does it on `theirs`.
fn with_neighbour<T: Send + 'static>(
    c: &mut Criterion,
    name: &str,
    mine: T,
    theirs: T,
    work: fn(&T),
) {
    let (stop, thread) = beside(theirs, work);
    c.bench_function(name, |b| b.iter(|| work(black_box(&mine))));
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("the neighbouring thread");
}

fn arc_clone_drop(arc: &Arc<[u64; 8]>) {
    black_box(Arc::clone(arc));
}

fn atomic_add(atomic: &Arc<AtomicU64>) {
    atomic.fetch_add(1, Ordering::Relaxed);
}

fn counter_inc(counter: &Counter) {
    counter.inc();
}

fn shared_counts(c: &mut Criterion) {
    let arc = Arc::new([0u64; 8]);
    with_neighbour(
        c,
        "arc clone+drop, alone",
        Arc::clone(&arc),
        Arc::new([0; 8]),
        arc_clone_drop,
    );
    with_neighbour(
        c,
        "arc clone+drop, shared",
        Arc::clone(&arc),
        arc,
        arc_clone_drop,
    );
    let atomic = Arc::new(AtomicU64::new(0));
    with_neighbour(
        c,
        "atomic add, alone",
        Arc::clone(&atomic),
        Arc::default(),
        atomic_add,
    );
    with_neighbour(
        c,
        "atomic add, shared",
        Arc::clone(&atomic),
        atomic,
        atomic_add,
    );
    let counter = Counter::default();
    with_neighbour(
        c,
        "Counter::inc, shared",
        counter.clone(),
        counter,
        counter_inc,
    );
}

criterion_group!(benches, shared_counts);
criterion_main!(benches);
