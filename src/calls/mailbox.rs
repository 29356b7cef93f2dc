//! The Call writer's mailbox: many threads post messages, one thread takes all of them at
//! once, and is woken only when it asked to be.
//!
//! The writer gathers a Call's changes for up to 100 ms before it writes them in one sync.
//! A channel (`std::sync::mpsc`, crossbeam's, tokio's) wakes a waiting receiver at every
//! send; with a Call change per alarm that is a thread switch per alarm, which the profile of
//! an alarm's path (issue 20) showed as the largest single cost on the writer's thread. Here
//! the receiver says what should wake it ([`Wake`]): any message (it is idle, or waits for
//! triage to finish a batch), or only an urgent one (it is gathering: someone waits for
//! durability, a stop, or the queue has grown to `wake_at`). Everything else lies in the
//! queue until the receiver looks, and is taken in one lock. No channel crate offers a send
//! that leaves the receiver asleep, so this is written by hand; it is a `Mutex` and a
//! `Condvar` around a `Vec`.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// What wakes a receiver waiting in [`Mailbox::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Any message.
    Any,
    /// An urgent message, or the queue reaching `wake_at` messages.
    Urgent,
}

/// What [`Mailbox::take`] ended with (the messages themselves are in its `out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Woken as asked.
    Woken,
    /// The time ran out; `out` holds whatever came meanwhile.
    TimedOut,
    /// Every poster is gone; `out` holds the last messages.
    Closed,
}

struct State<T> {
    queue: Vec<T>,
    /// An urgent message is in the queue.
    urgent: bool,
    /// What the waiting receiver asked to be woken by (`None`: it is not waiting).
    waiting: Option<Wake>,
    posters: usize,
    receiver: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
    wake_at: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A mailbox whose receiver is woken by urgent messages only, or by any, as it asks; it is
/// also woken once `wake_at` messages wait.
pub(crate) fn mailbox<T>(wake_at: usize) -> (Poster<T>, Mailbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: Vec::new(),
            urgent: false,
            waiting: None,
            posters: 1,
            receiver: true,
        }),
        cv: Condvar::new(),
        wake_at: wake_at.max(1),
    });
    (
        Poster {
            shared: shared.clone(),
        },
        Mailbox { shared },
    )
}

/// Posts messages to a [`Mailbox`]; cloned for every thread that posts.
pub(crate) struct Poster<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Poster<T> {
    /// Queues `msg`, waking the receiver only if it waits for any message (or the queue has
    /// grown to `wake_at`). `Err(msg)` if the receiver is gone.
    pub(crate) fn post(&self, msg: T) -> Result<(), T> {
        self.put(msg, false)
    }

    /// Queues `msg` and wakes the receiver if it waits at all. `Err(msg)` if it is gone.
    pub(crate) fn post_urgent(&self, msg: T) -> Result<(), T> {
        self.put(msg, true)
    }

    fn put(&self, msg: T, urgent: bool) -> Result<(), T> {
        let mut s = self.shared.lock();
        if !s.receiver {
            return Err(msg);
        }
        s.queue.push(msg);
        s.urgent |= urgent;
        let wake = match s.waiting {
            None => false,
            Some(Wake::Any) => true,
            Some(Wake::Urgent) => s.urgent || s.queue.len() >= self.shared.wake_at,
        };
        if wake {
            s.waiting = None;
            drop(s);
            self.shared.cv.notify_one();
        }
        Ok(())
    }
}

impl<T> Clone for Poster<T> {
    fn clone(&self) -> Self {
        self.shared.lock().posters += 1;
        Poster {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Poster<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.posters -= 1;
        if s.posters == 0 {
            drop(s);
            self.shared.cv.notify_one();
        }
    }
}

/// The receiving end: one thread takes every queued message at once.
pub(crate) struct Mailbox<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Mailbox<T> {
    /// Waits until `wake` says, or until `until` if given, and then moves every queued
    /// message to the end of `out` (in the order they were posted).
    pub(crate) fn take(&self, wake: Wake, until: Option<Instant>, out: &mut Vec<T>) -> Taken {
        let mut s = self.shared.lock();
        loop {
            let woken = match wake {
                Wake::Any => !s.queue.is_empty(),
                Wake::Urgent => s.urgent || s.queue.len() >= self.shared.wake_at,
            };
            let taken = if woken {
                Some(Taken::Woken)
            } else if s.posters == 0 {
                Some(Taken::Closed)
            } else if until.is_some_and(|u| Instant::now() >= u) {
                Some(Taken::TimedOut)
            } else {
                None
            };
            if let Some(t) = taken {
                s.waiting = None;
                s.urgent = false;
                out.append(&mut s.queue);
                return t;
            }
            s.waiting = Some(wake);
            s = match until {
                None => self
                    .shared
                    .cv
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    self.shared
                        .cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.receiver = false;
        s.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn gathering_receiver_sleeps_through_plain_posts_and_wakes_for_an_urgent_one() {
        let (tx, rx) = mailbox::<u32>(100);
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            let far = Instant::now() + Duration::from_secs(60);
            let taken = rx.take(Wake::Urgent, Some(far), &mut out);
            (taken, out)
        });
        for i in 0..10 {
            tx.post(i).unwrap();
        }
        tx.post_urgent(10).unwrap();
        let (taken, out) = t.join().unwrap();
        assert_eq!(taken, Taken::Woken);
        assert_eq!(out, (0..=10).collect::<Vec<_>>());
    }

    #[test]
    fn plain_posts_wake_a_gathering_receiver_once_wake_at_wait() {
        let (tx, rx) = mailbox::<u32>(5);
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            let far = Instant::now() + Duration::from_secs(60);
            let taken = rx.take(Wake::Urgent, Some(far), &mut out);
            (taken, out.len())
        });
        for i in 0..5 {
            tx.post(i).unwrap();
        }
        let (taken, n) = t.join().unwrap();
        assert_eq!(taken, Taken::Woken);
        assert!(n >= 5, "{n}");
    }

    #[test]
    fn an_idle_receiver_wakes_for_any_post_and_a_gathering_one_at_its_time() {
        let (tx, rx) = mailbox::<u32>(100);
        let mut out = Vec::new();
        tx.post(1).unwrap();
        assert_eq!(rx.take(Wake::Any, None, &mut out), Taken::Woken);
        assert_eq!(out, [1]);
        tx.post(2).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(rx.take(Wake::Urgent, Some(soon), &mut out), Taken::TimedOut);
        assert_eq!(out, [1, 2]);
        let past = Instant::now();
        assert_eq!(rx.take(Wake::Any, Some(past), &mut out), Taken::TimedOut);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn the_last_poster_gone_closes_it_with_what_was_left() {
        let (tx, rx) = mailbox::<u32>(100);
        let tx2 = tx.clone();
        tx.post(1).unwrap();
        drop(tx);
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            let urgent_only = rx.take(Wake::Urgent, None, &mut out);
            (urgent_only, out)
        });
        std::thread::sleep(Duration::from_millis(10));
        tx2.post(2).unwrap();
        drop(tx2);
        let (taken, out) = t.join().unwrap();
        assert_eq!(taken, Taken::Closed);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn posting_to_a_dropped_mailbox_gives_the_message_back() {
        let (tx, rx) = mailbox::<u32>(100);
        drop(rx);
        assert_eq!(tx.post(7), Err(7));
        assert_eq!(tx.post_urgent(8), Err(8));
    }
}
