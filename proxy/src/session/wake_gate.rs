//! Polling each of a task's concurrent futures only when something it waits on has woken it.
//!
//! `tokio::select!` polls every branch each time its task wakes. A session's task wakes for
//! one socket at a time, yet every wake also polled the other direction's pump (a read of a
//! socket with nothing to read: a readiness check and a waiter lock) and the shutdown token:
//! about a tenth of the relay's instructions per transaction. [`Gates`] gives each of `N`
//! futures a waker of its own, which notes the wake in a shared bit set before passing it on
//! to the task. Each poll of the task registers the task's waker once and takes the set: only
//! the futures it names (and all of them on the first poll) are polled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The wakes of `N` futures polled by one task (`N` ≤ 32).
///
/// Sound only where no two of the futures wait on the same wake slot: tokio keeps one waker
/// per socket direction, and the last registered wins.
pub struct Gates<const N: usize> {
    /// Where the futures' wakes are noted, with the task's waker.
    signal: Arc<Signal>,
    /// Each future's waker, made once: resources compare it with the one they hold and keep
    /// theirs.
    wakers: [Waker; N],
}

/// The futures woken since the last poll, one bit each, and the task to wake.
struct Signal {
    woken: AtomicU32,
    task: AtomicWaker,
}

/// One future's waker: sets its bit, then wakes the task.
struct Gate {
    signal: Arc<Signal>,
    bit: u32,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signal.woken.fetch_or(self.bit, Ordering::Release);
        self.signal.task.wake();
    }
}

/// The futures to poll in this poll of the task, from [`Gates::woken`].
#[derive(Clone, Copy, Debug)]
pub struct Woken(u32);

impl Woken {
    /// Whether future `index` is to be polled.
    pub fn has(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

impl<const N: usize> Gates<N> {
    /// Gates for `N` futures, all counted as woken until the first poll (so that each is
    /// polled once and registers its wakers).
    pub fn new() -> Self {
        const { assert!(N <= 32, "one bit per future in a u32") };
        let all = if N == 32 { u32::MAX } else { (1u32 << N) - 1 };
        let signal = Arc::new(Signal {
            woken: AtomicU32::new(all),
            task: AtomicWaker::new(),
        });
        let wakers = std::array::from_fn(|index| {
            Waker::from(Arc::new(Gate {
                signal: Arc::clone(&signal),
                bit: 1 << index,
            }))
        });
        Gates { signal, wakers }
    }

    /// At the start of a poll of the task: the futures woken since the last one. The task's
    /// waker is registered first, so a wake from here on reaches the task and none is lost
    /// between this call and the task going to sleep.
    pub fn woken(&self, cx: &Context<'_>) -> Woken {
        self.signal.task.register(cx.waker());
        Woken(self.signal.woken.swap(0, Ordering::AcqRel))
    }

    /// The context to poll future `index` with.
    pub fn context(&self, index: usize) -> Context<'_> {
        Context::from_waker(&self.wakers[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::task::Poll;

    /// A future that counts its polls and stays pending until `ready` is set; it keeps the
    /// waker it was last given in `waker`.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<parking_lot::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// A task waker that counts its wakes.
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls the gated futures as a task would: each one only when woken.
    fn poll_gated(gates: &Gates<2>, cx: &Context<'_>, probes: &mut [Pin<&mut Probe>; 2]) {
        let woken = gates.woken(cx);
        for (index, probe) in probes.iter_mut().enumerate() {
            if woken.has(index) {
                let _ = probe.as_mut().poll(&mut gates.context(index));
            }
        }
    }

    #[test]
    fn only_woken_futures_are_polled_and_each_wake_reaches_the_task() {
        let polls = [0, 1].map(|_| Arc::new(AtomicUsize::new(0)));
        let ready = Arc::new(AtomicBool::new(false));
        let held = [0, 1].map(|_| Arc::new(parking_lot::Mutex::new(None)));
        let mut first = std::pin::pin!(Probe {
            polls: Arc::clone(&polls[0]),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&held[0]),
        });
        let mut second = std::pin::pin!(Probe {
            polls: Arc::clone(&polls[1]),
            ready: Arc::new(AtomicBool::new(false)),
            waker: Arc::clone(&held[1]),
        });
        let gates = Gates::<2>::new();
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let cx = Context::from_waker(&task_waker);
        let count = |index: usize| polls[index].load(Ordering::SeqCst);

        // The first poll reaches both; later ones reach neither until one is woken.
        for _ in 0..3 {
            poll_gated(&gates, &cx, &mut [first.as_mut(), second.as_mut()]);
        }
        assert_eq!((count(0), count(1)), (1, 1));
        assert_eq!(task.0.load(Ordering::SeqCst), 0);

        // The second's wake wakes the task, and the next poll reaches it alone.
        held[1].lock().take().expect("a waker was kept").wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        poll_gated(&gates, &cx, &mut [first.as_mut(), second.as_mut()]);
        poll_gated(&gates, &cx, &mut [first.as_mut(), second.as_mut()]);
        assert_eq!((count(0), count(1)), (1, 2));

        // Both woken before the task runs: one poll reaches both.
        ready.store(true, Ordering::SeqCst);
        held[0]
            .lock()
            .take()
            .expect("a waker was kept")
            .wake_by_ref();
        held[1]
            .lock()
            .take()
            .expect("a waker was kept")
            .wake_by_ref();
        poll_gated(&gates, &cx, &mut [first.as_mut(), second.as_mut()]);
        assert_eq!((count(0), count(1)), (2, 3));
    }

    #[tokio::test]
    async fn gated_futures_each_complete_when_their_event_comes() {
        let (tx_a, rx_a) = tokio::sync::oneshot::channel::<u8>();
        let (tx_b, rx_b) = tokio::sync::oneshot::channel::<u8>();
        let mut a = std::pin::pin!(rx_a);
        let mut b = std::pin::pin!(rx_b);
        tokio::spawn(async move {
            crate::timer::sleep(std::time::Duration::from_millis(20)).await;
            tx_b.send(2).unwrap();
            crate::timer::sleep(std::time::Duration::from_millis(20)).await;
            tx_a.send(1).unwrap();
        });
        let gates = Gates::<2>::new();
        let mut done = [None, None];
        std::future::poll_fn(|cx| {
            let woken = gates.woken(cx);
            if woken.has(0) {
                if let Poll::Ready(got) = a.as_mut().poll(&mut gates.context(0)) {
                    done[0] = Some(got.unwrap());
                    // The order they completed in: b first.
                    assert_eq!(done[1], Some(2));
                    return Poll::Ready(());
                }
            }
            if woken.has(1) && done[1].is_none() {
                if let Poll::Ready(got) = b.as_mut().poll(&mut gates.context(1)) {
                    done[1] = Some(got.unwrap());
                }
            }
            Poll::Pending
        })
        .await;
        assert_eq!(done, [Some(1), Some(2)]);
    }
}
