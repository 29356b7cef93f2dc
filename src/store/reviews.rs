//! Reviews of Calls closed without a dispatch and without an emergency service, kept in the
//! `calls` tree beside the Calls so that a closing and its review are written in ONE atomic
//! batch: `b"r"` + call id (u64 big-endian) -> JSON [`Review`] (one per Call: its latest
//! closing marked for review, with the decision once made), and `b"q"` + call id -> empty,
//! for each review not decided yet (the pending list reads only these).
//!
//! A review is written when a change of a closed Call carries a `Closed` line marked
//! `review` at an index other than the stored review's (so writing the same lines again, as a
//! retried batch does, never brings a decided review back). A decision is one transaction:
//! the review gets it and leaves the pending list, once.

use super::kv::TxError;
use jiff::{SignedDuration, Timestamp};

use super::{CallChange, Store, StoreError, id_key as key};
use crate::model::CallState;
use crate::model::review::{Review, ReviewDecision};

pub(super) const REVIEW: u8 = b'r';
pub(super) const PENDING: u8 = b'q';

/// How far before `since` the backward scan of reviews goes on: reviews are kept by Call id,
/// which follows the opening, and a Call closed in the window may have been opened before it.
const SCAN_SLACK: SignedDuration = SignedDuration::from_hours(24);

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "calls",
        detail: format!("review: {e}"),
    }
}

fn id_of(k: &[u8], prefix: u8) -> Option<u64> {
    match k.split_first() {
        Some((&p, rest)) if p == prefix => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// What came of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Made; the review as it is now.
    Made(Review),
    /// The Call has no review.
    NoReview,
    /// Someone decided it before; the review with that decision.
    Already(Review),
}

impl Store {
    /// Adds to `batch` the review of `ch`'s closing, if the change closes the Call with a
    /// line marked for review that is not stored yet.
    pub(super) fn review_of_change(
        &self,
        batch: &mut super::kv::Batch,
        ch: &CallChange,
    ) -> Result<(), StoreError> {
        let c = &ch.call;
        if c.state != CallState::Closed {
            return Ok(());
        }
        let newest =
            c.timeline.iter().enumerate().rev().find_map(|(i, e)| {
                Review::of_closing(c, e, ch.first_line.saturating_add(i as u32))
            });
        let Some(review) = newest else {
            return Ok(());
        };
        if self.review(c.id)?.is_some_and(|r| r.line == review.line) {
            return Ok(());
        }
        batch.insert(
            key(REVIEW, c.id),
            serde_json::to_vec(&review).map_err(corrupt)?,
        );
        batch.insert(key(PENDING, c.id), &[] as &[u8]);
        Ok(())
    }

    /// The review of Call `id`, if it has one.
    pub fn review(&self, id: u64) -> Result<Option<Review>, StoreError> {
        self.calls
            .get(key(REVIEW, id))?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// The reviews not decided yet, oldest Call first.
    pub fn pending_reviews(&self) -> Result<Vec<Review>, StoreError> {
        let mut out = Vec::new();
        for item in self.calls.scan_prefix([PENDING]) {
            let (k, _) = item?;
            let Some(id) = id_of(&k, PENDING) else {
                continue;
            };
            if let Some(r) = self.review(id)?
                && r.decision.is_none()
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The reviews of closings at or after `since` (decided or not), newest Call first.
    pub fn reviews_closed_since(&self, since: Timestamp) -> Result<Vec<Review>, StoreError> {
        let stop = since.checked_sub(SCAN_SLACK).unwrap_or(Timestamp::MIN);
        let mut out = Vec::new();
        for item in self
            .calls
            .range(key(REVIEW, 0)..=key(REVIEW, u64::MAX))
            .rev()
        {
            let (k, v) = item?;
            if id_of(&k, REVIEW).is_none() {
                continue;
            }
            let r: Review = serde_json::from_slice(&v).map_err(corrupt)?;
            if r.opened_at < stop {
                break;
            }
            if r.closed_at >= since {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Records a supervisor's decision on Call `id`'s review, once, durably.
    pub fn decide_review(&self, id: u64, decision: ReviewDecision) -> Result<Decided, StoreError> {
        let decided = self.calls.transaction(|tx| {
            let Some(v) = tx.get(key(REVIEW, id))? else {
                return Ok(Decided::NoReview);
            };
            let mut r: Review =
                serde_json::from_slice(&v).map_err(|e| TxError::Abort(e.to_string()))?;
            if r.decision.is_some() {
                return Ok(Decided::Already(r));
            }
            r.decision = Some(decision.clone());
            let v = serde_json::to_vec(&r).map_err(|e| TxError::Abort(e.to_string()))?;
            tx.insert(key(REVIEW, id), v)?;
            tx.remove(key(PENDING, id))?;
            Ok(Decided::Made(r))
        })?;
        if matches!(decided, Decided::Made(_)) {
            self.sync()?;
        }
        Ok(decided)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::review::ReviewVerdict;
    use crate::model::{Call, Outcome, Priority, TimelineEntry, TimelineEvent};
    use crate::store::testing::on_each_backend;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    pub(crate) fn closing(at: i64, review: bool) -> TimelineEntry {
        TimelineEntry {
            at: ts(at),
            user: Some("ola".into()),
            what: TimelineEvent::Closed {
                outcome: Outcome::AccidentalPress,
                note: "pressed by mistake".into(),
                override_reason: None,
                overrode: String::new(),
                review,
            },
        }
    }

    pub(crate) fn call(
        id: u64,
        opened: i64,
        state: CallState,
        timeline: Vec<TimelineEntry>,
    ) -> Call {
        Call {
            id,
            priority: Priority::PERSONAL,
            state,
            owner: Some("ola".into()),
            opened_at: ts(opened),
            alarm_count: 1,
            subscriber: Some("S-1".into()),
            account: "1234".into(),
            kind: "Personal alarm".into(),
            restored: false,
            answered_at: None,
            closed_at: (state == CallState::Closed).then(|| ts(opened + 60)),
            outcome: (state == CallState::Closed).then_some(Outcome::AccidentalPress),
            timeline,
            last_signal_id: 1,
        }
    }

    fn decision(verdict: ReviewVerdict, at: i64) -> ReviewDecision {
        ReviewDecision {
            verdict,
            by: "sara".into(),
            at: ts(at),
            note: String::new(),
        }
    }

    on_each_backend! {
    fn a_closing_for_review_is_pending_until_decided_once_and_a_rewrite_keeps_the_decision(b) {
        let store = b.open();
        // One closed for review, one closed without (dispatched), one open.
        let reviewed = call(1, 0, CallState::Closed, vec![closing(60, true)]);
        store
            .save_calls(
                &[
                    reviewed.clone(),
                    call(2, 10, CallState::Closed, vec![closing(70, false)]),
                    call(3, 20, CallState::Queued, Vec::new()),
                ],
                None,
            )
            .unwrap();
        let pending = store.pending_reviews().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].call, pending[0].line, pending[0].closed_at),
            (1, 0, ts(60))
        );
        assert_eq!(pending[0].reason, "pressed by mistake");
        assert_eq!(store.review(2).unwrap(), None);

        let made = store
            .decide_review(1, decision(ReviewVerdict::Accepted, 100))
            .unwrap();
        assert!(matches!(made, Decided::Made(ref r) if r.decision.is_some()));
        assert!(store.pending_reviews().unwrap().is_empty());
        assert!(matches!(
            store
                .decide_review(1, decision(ReviewVerdict::Reopened, 101))
                .unwrap(),
            Decided::Already(r) if r.decision.as_ref().unwrap().verdict == ReviewVerdict::Accepted
        ));
        assert_eq!(
            store
                .decide_review(2, decision(ReviewVerdict::Accepted, 101))
                .unwrap(),
            Decided::NoReview
        );
        // The same closing written again (a retried batch) does not undo the decision.
        store
            .save_calls(std::slice::from_ref(&reviewed), None)
            .unwrap();
        assert!(store.pending_reviews().unwrap().is_empty());
        // Reopened and closed again for review: a new review of the new closing.
        let mut again = reviewed;
        again.timeline.push(closing(200, true));
        store
            .save_call_changes(
                &[CallChange {
                    call: Call {
                        timeline: again.timeline[1..].to_vec(),
                        ..again
                    },
                    first_line: 1,
                }],
                None,
            )
            .unwrap();
        let pending = store.pending_reviews().unwrap();
        assert_eq!(
            (pending.len(), pending[0].line, pending[0].closed_at),
            (1, 1, ts(200))
        );
        // The window: closings at or after `since`.
        assert_eq!(store.reviews_closed_since(ts(150)).unwrap().len(), 1);
        assert!(store.reviews_closed_since(ts(201)).unwrap().is_empty());
        // The Calls themselves read as before.
        assert_eq!(store.call(1).unwrap().unwrap().timeline.len(), 2);
        assert_eq!(store.open_calls().unwrap().len(), 1);
        assert_eq!(store.max_call_id().unwrap(), 3);
    }
    }

    on_each_backend! {
    fn two_supervisors_deciding_at_once_make_one_decision(b) {
        let store = b.open();
        let other = b.second(&store);
        for id in 1..=10 {
            store
                .save_calls(&[call(id, 0, CallState::Closed, vec![closing(60, true)])], None)
                .unwrap();
            let start = std::sync::Barrier::new(2);
            let verdicts = [ReviewVerdict::Accepted, ReviewVerdict::Reopened];
            let results: Vec<Decided> = std::thread::scope(|s| {
                let handles: Vec<_> = [&store, &other]
                    .into_iter()
                    .zip(verdicts)
                    .map(|(st, v)| {
                        let start = &start;
                        s.spawn(move || {
                            start.wait();
                            st.decide_review(id, decision(v, 100)).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let made: Vec<&Review> = results
                .iter()
                .filter_map(|r| match r {
                    Decided::Made(r) => Some(r),
                    _ => None,
                })
                .collect();
            assert_eq!(made.len(), 1, "call {id}: {results:?}");
            let winner = made[0].decision.as_ref().unwrap().verdict;
            for r in &results {
                if let Decided::Already(r) = r {
                    assert_eq!(r.decision.as_ref().unwrap().verdict, winner, "call {id}");
                }
            }
            let stored = other.review(id).unwrap().unwrap();
            assert_eq!(stored.decision.unwrap().verdict, winner);
        }
        assert!(store.pending_reviews().unwrap().is_empty());
    }
    }
}
