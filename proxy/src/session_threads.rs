//! Session threads: single-threaded tokio runtimes (`--session-threads`, by default half the
//! cores), each on its own OS thread, serving whole sessions. A session's two sockets, its
//! timers and its tasks then live on one thread: the relay never wakes another thread to
//! forward a message (the cross-thread `futex` wake-ups of a work-stealing runtime were most of
//! the CPU that separated pgseal from PgBouncer per transaction). The listener hands each
//! accepted connection to the next thread in turn.
//!
//! The session threads' runtimes have no time driver, which would cost every park a clock read
//! and a walk of its timer wheel: one more thread keeps their timers ([`crate::timer`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The session threads of `pgseal serve`.
pub struct SessionThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
    /// Stopped after the session threads, whose timers it keeps.
    stop_timers: CancellationToken,
    timers: JoinHandle<()>,
}

impl SessionThreads {
    /// Starts `count` threads (at least one), each driving its own runtime until
    /// [`SessionThreads::stop`].
    pub fn start(count: usize) -> std::io::Result<SessionThreads> {
        let stop_timers = CancellationToken::new();
        let keeper = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let keeper_handle = keeper.handle().clone();
        let stopped = stop_timers.clone();
        let timers = std::thread::Builder::new()
            .name("pgseal-timers".into())
            .spawn(move || keeper.block_on(stopped.cancelled()))?;
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for n in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            handles.push(runtime.handle().clone());
            let stopped = stop.clone();
            let keeper = keeper_handle.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("pgseal-session-{n}"))
                    .spawn(move || {
                        crate::timer::kept_by(keeper);
                        runtime.block_on(stopped.cancelled())
                    })?,
            );
        }
        Ok(SessionThreads {
            handles,
            next: AtomicUsize::new(0),
            stop,
            threads,
            stop_timers,
            timers,
        })
    }

    /// How many threads serve sessions.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are none (never, once started).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime of the thread whose turn it is.
    pub fn next(&self) -> &Handle {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        &self.handles[n % self.handles.len()]
    }

    /// Stops every thread (their runtimes drop what they still run) and waits for them, the
    /// timer thread last: a session's timer polled after it has stopped would panic.
    pub fn stop(self) {
        self.stop.cancel();
        for thread in self.threads {
            let _ = thread.join();
        }
        self.stop_timers.cancel();
        let _ = self.timers.join();
    }
}
