//! Calls: `b"o"` + id (u64 big-endian) -> JSON of an open [`Call`], `b"c"` + id -> a closed
//! one, and `b"cursor"` -> the id (u64 big-endian) of the last journal record triage has
//! taken into account. The Calls and the cursor are saved in one atomic batch, so after a
//! crash triage resumes from a cursor that matches the Calls.

use jiff::Timestamp;

use super::{Store, StoreError};
use crate::model::{Call, CallState};

const OPEN: u8 = b'o';
const CLOSED: u8 = b'c';
const CURSOR: &[u8] = b"cursor";

/// How far before `since` the backward scan of closed Calls goes on, in case `opened_at`
/// does not grow strictly with the id (clock steps, late Signals).
const SCAN_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

fn key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The id of a Call key (`prefix` + 8 bytes); `None` for other keys (such as `cursor`,
/// which also starts with `c`).
fn id_of(k: &[u8], prefix: u8) -> Option<u64> {
    match k.split_first() {
        Some((&p, rest)) if p == prefix => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "calls",
        detail: e.to_string(),
    }
}

fn decode(v: &[u8]) -> Result<Call, StoreError> {
    serde_json::from_slice(v).map_err(corrupt)
}

impl Store {
    /// Saves Calls and, if given, the triage cursor in ONE atomic batch. A Call whose state
    /// is `Closed` is written to the closed Calls and removed from the open ones; any other
    /// is written to the open ones. Not durable until [`Store::flush`].
    pub fn save_calls(&self, calls: &[Call], cursor: Option<u64>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for c in calls {
            let v = serde_json::to_vec(c).map_err(corrupt)?;
            if c.state == CallState::Closed {
                batch.insert(&key(CLOSED, c.id), v);
                batch.remove(&key(OPEN, c.id));
            } else {
                batch.insert(&key(OPEN, c.id), v);
            }
        }
        if let Some(id) = cursor {
            batch.insert(CURSOR, &id.to_be_bytes());
        }
        self.calls.apply_batch(batch)?;
        Ok(())
    }

    /// Every Call not closed, by id.
    pub fn open_calls(&self) -> Result<Vec<Call>, StoreError> {
        let mut out = Vec::new();
        for item in self.calls.scan_prefix([OPEN]) {
            let (k, v) = item?;
            if id_of(&k, OPEN).is_some() {
                out.push(decode(&v)?);
            }
        }
        Ok(out)
    }

    /// The Call with this id, open or closed.
    pub fn call(&self, id: u64) -> Result<Option<Call>, StoreError> {
        match self.calls.get(key(OPEN, id))? {
            Some(v) => decode(&v).map(Some),
            None => self
                .calls
                .get(key(CLOSED, id))?
                .map(|v| decode(&v))
                .transpose(),
        }
    }

    /// Every Call, open or closed, opened at or after `since`, by id. Closed Calls are read
    /// from the newest backwards, and the scan stops once they are well before `since`.
    pub fn calls_opened_since(&self, since: Timestamp) -> Result<Vec<Call>, StoreError> {
        let stop = since.checked_sub(SCAN_SLACK).unwrap_or(Timestamp::MIN);
        let mut out: Vec<Call> = self
            .open_calls()?
            .into_iter()
            .filter(|c| c.opened_at >= since)
            .collect();
        for item in self
            .calls
            .range(key(CLOSED, 0)..=key(CLOSED, u64::MAX))
            .rev()
        {
            let (k, v) = item?;
            if id_of(&k, CLOSED).is_none() {
                continue;
            }
            let c = decode(&v)?;
            if c.opened_at < stop {
                break;
            }
            if c.opened_at >= since {
                out.push(c);
            }
        }
        out.sort_unstable_by_key(|c| c.id);
        Ok(out)
    }

    /// The id of the last journal record triage has taken into account (0 if none).
    pub fn triage_cursor(&self) -> Result<u64, StoreError> {
        match self.calls.get(CURSOR)? {
            None => Ok(0),
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("the cursor is not 8 bytes")),
        }
    }

    /// The highest Call id stored, open or closed (0 if none).
    pub fn max_call_id(&self) -> Result<u64, StoreError> {
        let open = match self.calls.scan_prefix([OPEN]).next_back() {
            Some(item) => id_of(&item?.0, OPEN).unwrap_or(0),
            None => 0,
        };
        let mut closed = 0;
        for item in self
            .calls
            .range(key(CLOSED, 0)..=key(CLOSED, u64::MAX))
            .rev()
        {
            if let Some(id) = id_of(&item?.0, CLOSED) {
                closed = id;
                break;
            }
        }
        Ok(open.max(closed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, Priority, TimelineEntry, TimelineEvent};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn call(id: u64, opened: i64, state: CallState) -> Call {
        Call {
            id,
            priority: Priority::PERSONAL,
            state,
            owner: (state != CallState::Queued).then(|| "åsa".to_string()),
            opened_at: ts(opened),
            alarm_count: 1,
            subscriber: Some("S-1".into()),
            account: "1234".into(),
            kind: "Fall".into(),
            restored: false,
            answered_at: None,
            closed_at: (state == CallState::Closed).then(|| ts(opened + 60)),
            outcome: (state == CallState::Closed).then_some(Outcome::NoAction),
            timeline: vec![TimelineEntry {
                at: ts(opened),
                user: None,
                what: TimelineEvent::Signal {
                    signal_id: id,
                    account: "1234".into(),
                    code: "CID 101".into(),
                    description: "Medical".into(),
                    qualifier: "new".into(),
                    zone: None,
                },
            }],
        }
    }

    #[test]
    fn empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.triage_cursor().unwrap(), 0);
        assert_eq!(store.max_call_id().unwrap(), 0);
        assert!(store.open_calls().unwrap().is_empty());
        assert_eq!(store.call(1).unwrap(), None);
        assert!(store.calls_opened_since(ts(0)).unwrap().is_empty());
    }

    #[test]
    fn save_moves_closed_calls_and_keeps_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .save_calls(
                &[
                    call(1, 1000, CallState::Queued),
                    call(2, 1010, CallState::Claimed),
                ],
                Some(17),
            )
            .unwrap();
        assert_eq!(store.triage_cursor().unwrap(), 17);
        assert_eq!(
            store
                .open_calls()
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>(),
            [1, 2]
        );

        // Call 1 closes; no cursor: the cursor stays.
        store
            .save_calls(&[call(1, 1000, CallState::Closed)], None)
            .unwrap();
        assert_eq!(store.triage_cursor().unwrap(), 17);
        assert_eq!(
            store
                .open_calls()
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(
            store.call(1).unwrap(),
            Some(call(1, 1000, CallState::Closed))
        );
        assert_eq!(
            store.call(2).unwrap(),
            Some(call(2, 1010, CallState::Claimed))
        );
        assert_eq!(store.max_call_id().unwrap(), 2);

        // The cursor (a `c` key) is neither a closed Call nor in the way of the id.
        store
            .save_calls(&[call(300, 2000, CallState::Queued)], Some(u64::MAX))
            .unwrap();
        assert_eq!(store.triage_cursor().unwrap(), u64::MAX);
        assert_eq!(store.max_call_id().unwrap(), 300);
        store
            .save_calls(&[call(300, 2000, CallState::Closed)], None)
            .unwrap();
        assert_eq!(store.max_call_id().unwrap(), 300);
        assert!(
            store
                .open_calls()
                .unwrap()
                .iter()
                .all(|c| c.state != CallState::Closed)
        );

        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.open_calls().unwrap().len(),
            1,
            "durable across reopen"
        );
    }

    #[test]
    fn opened_since_takes_open_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let day = 86_400;
        let mut calls = Vec::new();
        for id in 1..=20u64 {
            let state = if id % 3 == 0 {
                CallState::Queued
            } else {
                CallState::Closed
            };
            calls.push(call(id, (id as i64) * day / 4, state));
        }
        store.save_calls(&calls, Some(20)).unwrap();
        // since = 3 days: ids with id*day/4 >= 3*day, i.e. id >= 12.
        let got = store.calls_opened_since(ts(3 * day)).unwrap();
        assert_eq!(
            got.iter().map(|c| c.id).collect::<Vec<_>>(),
            (12..=20).collect::<Vec<_>>()
        );
        // An old open Call is not "since".
        assert!(got.iter().all(|c| c.opened_at >= ts(3 * day)));
        assert_eq!(store.calls_opened_since(ts(0)).unwrap().len(), 20);
        assert!(store.calls_opened_since(ts(100 * day)).unwrap().is_empty());
    }
}
