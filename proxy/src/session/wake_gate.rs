//! Polling a branch of a `select!` only when something it waits on has woken it.
//!
//! `tokio::select!` polls every branch each time its task wakes. A session's task wakes for
//! one socket at a time, yet every wake also polled the other direction's pump (a read of a
//! socket with nothing to read: a readiness check and a waiter lock) and the shutdown token:
//! about a tenth of the relay's instructions per transaction. [`WakeGated`] gives its future a
//! waker of its own, which records the wake before passing it on to the task; polled when its
//! future has not been woken since it last returned `Pending`, it answers `Pending` at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// A future polled only once woken (and on its first poll).
///
/// Sound only where no two gated futures wait on the same wake slot: tokio keeps one waker per
/// socket direction, and the last registered wins.
pub struct WakeGated<F> {
    /// The gated future (boxed: it is polled in place, whatever moves the gate).
    inner: Pin<Box<F>>,
    /// Where the inner future's wakes are noted, with the task's waker to pass them on to.
    signal: Arc<Signal>,
    /// The waker the inner future is given, made once: resources compare it with the one
    /// they hold and keep theirs.
    waker: Waker,
    /// Whether the inner future has been polled once (it has registered its wakers).
    started: bool,
}

/// What the inner future's waker does: notes the wake, then wakes the task.
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WakeGated<F> {
    /// Gates `inner`.
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        WakeGated {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            started: false,
        }
    }
}

impl<F: Future> Future for WakeGated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // The task's waker first: a wake from here on reaches the task, so none is lost
        // between the check below and the task going to sleep.
        this.signal.task.register(cx.waker());
        let woken = this.signal.woken.swap(false, Ordering::AcqRel);
        if this.started && !woken {
            return Poll::Pending;
        }
        this.started = true;
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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

    #[test]
    fn an_unwoken_future_is_not_polled_and_a_wake_reaches_the_task() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let held = Arc::new(parking_lot::Mutex::new(None));
        let mut gated = std::pin::pin!(WakeGated::new(Probe {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&held),
        }));
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);

        // The first poll reaches the future; later ones do not until it is woken.
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(task.0.load(Ordering::SeqCst), 0);

        // Its wake wakes the task, and the next poll reaches it.
        held.lock().take().expect("the future kept a waker").wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);

        // Woken once ready, it completes.
        ready.store(true, Ordering::SeqCst);
        held.lock()
            .take()
            .expect("the future kept a waker")
            .wake_by_ref();
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gated_branches_of_a_select_each_complete_when_their_event_comes() {
        let (tx_a, rx_a) = tokio::sync::oneshot::channel::<u8>();
        let (tx_b, rx_b) = tokio::sync::oneshot::channel::<u8>();
        let mut a = std::pin::pin!(WakeGated::new(rx_a));
        let mut b = std::pin::pin!(WakeGated::new(rx_b));
        tokio::spawn(async move {
            crate::timer::sleep(std::time::Duration::from_millis(20)).await;
            tx_b.send(2).unwrap();
            crate::timer::sleep(std::time::Duration::from_millis(20)).await;
            tx_a.send(1).unwrap();
        });
        let first = tokio::select! {
            a = &mut a => a.unwrap(),
            b = &mut b => b.unwrap(),
        };
        assert_eq!(first, 2);
        assert_eq!(a.await.unwrap(), 1);
    }
}
