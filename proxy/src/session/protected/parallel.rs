//! Work on a session's hot path split over the machine's cores (the parameters of a large Bind
//! sealed). The session's own thread takes the first range, scoped helper threads the others,
//! and the results come back in range order. Helpers are counted process-wide: past one less
//! than [`threads`], a range runs on the session's thread instead, so many sessions sealing at
//! once never start more threads than the machine has cores.

use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads one piece of work may use at most.
const MAX_THREADS: usize = 4;

/// How many threads one piece of work may use: the machine's cores, at most [`MAX_THREADS`].
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_THREADS)
    })
}

/// Helper threads running now, across every session.
static HELPERS: AtomicUsize = AtomicUsize::new(0);

/// A helper slot, given back when dropped (also when the work panics).
struct HelperSlot;

impl HelperSlot {
    fn take() -> Option<HelperSlot> {
        let limit = threads().saturating_sub(1);
        HELPERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
                (busy < limit).then_some(busy + 1)
            })
            .ok()
            .map(|_| HelperSlot)
    }
}

impl Drop for HelperSlot {
    fn drop(&mut self) {
        HELPERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `0..count` cut into `parts` contiguous ranges of nearly equal length.
pub fn split(count: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| (count * i / parts)..(count * (i + 1) / parts))
        .collect()
}

/// Runs `work` on every range (the first here, the others on scoped helper threads, or here
/// too when no helper slot is free or a thread cannot be started) and returns the results in
/// range order. A panic in a thread is
/// raised again here, as it would have been on one thread.
pub fn map_ranges<T: Send>(
    ranges: Vec<Range<usize>>,
    work: impl Fn(Range<usize>) -> T + Sync,
) -> Vec<T> {
    let mut ranges = ranges.into_iter();
    let Some(first) = ranges.next() else {
        return Vec::new();
    };
    let work = &work;
    std::thread::scope(|scope| {
        let spawned: Vec<_> = ranges
            .map(|range| {
                let Some(slot) = HelperSlot::take() else {
                    return Err(range);
                };
                let moved = range.clone();
                std::thread::Builder::new()
                    .name("pgseal-work".into())
                    .spawn_scoped(scope, move || {
                        let _slot = slot;
                        work(moved)
                    })
                    .map_err(|_| range)
            })
            .collect();
        let mut results = Vec::with_capacity(spawned.len() + 1);
        results.push(work(first));
        for part in spawned {
            results.push(match part {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(range) => work(range),
            });
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_index_once_in_order() {
        for (count, parts) in [(0, 1), (7, 1), (7, 2), (1000, 3), (4096, 4), (3, 4)] {
            let ranges = split(count, parts);
            assert_eq!(ranges.len(), parts);
            let flat: Vec<usize> = ranges.into_iter().flatten().collect();
            assert_eq!(flat, (0..count).collect::<Vec<_>>(), "{count} in {parts}");
        }
    }

    #[test]
    fn results_come_back_in_range_order() {
        let sums = map_ranges(split(10_000, 4), |range| range.sum::<usize>());
        assert_eq!(sums.len(), 4);
        assert_eq!(sums.iter().sum::<usize>(), (0..10_000).sum::<usize>());
        assert!(sums.windows(2).all(|w| w[0] < w[1]), "{sums:?}");
    }
}
