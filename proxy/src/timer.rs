//! Sleeps and timeouts that work on the session threads, whose runtimes have no time driver.
//!
//! A tokio runtime with a time driver reads the clock and walks its timer wheel every time it
//! parks, whether a timer is armed or not: twice per statement a session relays, some 850
//! instructions per transaction, a seventh of the relay's own work (issue 19). Sessions need
//! timers rarely (a startup or connect deadline, a message left half sent, a paced export), so
//! the session threads leave the time driver out and their timers are kept by one timer thread
//! ([`crate::session_threads`]); a timer that fires wakes its session across threads.
//!
//! Each function here creates the timer on the timer thread's runtime when called on a session
//! thread, and on the calling runtime anywhere else. Every sleep and timeout in pgseal goes
//! through here (`proxy/clippy.toml` forbids tokio's own): one created directly on a session
//! thread would panic. So would one made by a crate on a session thread (tokio-postgres's
//! `connect_timeout`: the budget store and the audit table run on the main runtime), or on a
//! thread a session runtime starts for blocking work, which has no keeper.

use std::cell::RefCell;
use std::future::IntoFuture;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Interval, Sleep, Timeout};

thread_local! {
    /// The runtime that keeps this thread's timers, on a session thread.
    static KEEPER: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Makes `keeper` (a runtime with a time driver, running on another thread) keep the timers
/// created on the calling thread from now on.
pub(crate) fn kept_by(keeper: Handle) {
    KEEPER.with_borrow_mut(|slot| *slot = Some(keeper));
}

/// Runs `make` (which creates a timer) in the context of the runtime that keeps this thread's
/// timers.
#[allow(clippy::disallowed_methods)]
fn on_keeper<T>(make: impl FnOnce() -> T) -> T {
    KEEPER.with_borrow(|keeper| match keeper {
        Some(keeper) => {
            let _entered = keeper.enter();
            make()
        }
        None => make(),
    })
}

/// [`tokio::time::sleep`], kept by the thread's timer keeper.
#[allow(clippy::disallowed_methods)]
pub fn sleep(duration: Duration) -> Sleep {
    on_keeper(|| tokio::time::sleep(duration))
}

/// [`tokio::time::timeout`], kept by the thread's timer keeper (`future` is made on the
/// calling runtime: only the timer is the keeper's).
#[allow(clippy::disallowed_methods)]
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    let future = future.into_future();
    on_keeper(|| tokio::time::timeout(duration, future))
}

/// [`tokio::time::timeout_at`], kept by the thread's timer keeper (`future` is made on the
/// calling runtime: only the timer is the keeper's).
#[allow(clippy::disallowed_methods)]
pub fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    let future = future.into_future();
    on_keeper(|| tokio::time::timeout_at(deadline, future))
}

/// [`tokio::time::interval`], kept by the thread's timer keeper.
#[allow(clippy::disallowed_methods)]
pub fn interval(period: Duration) -> Interval {
    on_keeper(|| tokio::time::interval(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime without a time driver, as a session thread's, whose timers another runtime
    /// keeps: its sleeps, timeouts and intervals fire.
    #[test]
    fn timers_work_on_a_runtime_without_a_time_driver() {
        let keeper = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let handle = keeper.handle().clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let keeper_thread = std::thread::spawn(move || keeper.block_on(stopped.cancelled()));
        let session = std::thread::spawn(move || {
            kept_by(handle);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            runtime.block_on(async {
                let started = std::time::Instant::now();
                sleep(Duration::from_millis(20)).await;
                assert!(started.elapsed() >= Duration::from_millis(20));
                let never = std::future::pending::<()>();
                assert!(timeout(Duration::from_millis(10), never).await.is_err());
                let deadline = Instant::now() + Duration::from_millis(10);
                assert_eq!(timeout_at(deadline, async { 7 }).await, Ok(7));
                let mut ticks = interval(Duration::from_millis(5));
                ticks.tick().await;
                ticks.tick().await;
                // A sleep reset to later, as the relay's message deadline is on every read.
                let mut later = std::pin::pin!(sleep(Duration::from_millis(5)));
                later
                    .as_mut()
                    .reset(Instant::now() + Duration::from_millis(30));
                let reset_at = std::time::Instant::now();
                later.await;
                assert!(reset_at.elapsed() >= Duration::from_millis(25));
            });
        });
        session.join().unwrap();
        stop.cancel();
        keeper_thread.join().unwrap();
    }

    /// Off the session threads, timers are the calling runtime's own (tokio's paused clock
    /// included).
    #[tokio::test(start_paused = true)]
    async fn elsewhere_timers_are_the_runtimes_own() {
        let started = Instant::now();
        sleep(Duration::from_secs(3600)).await;
        assert!(started.elapsed() >= Duration::from_secs(3600));
    }
}
