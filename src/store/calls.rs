//! Calls: `b"o"` + id (u64 big-endian) -> JSON of an open [`Call`] without its timeline,
//! `b"c"` + id -> a closed one, `b"t"` + id + index (u32 big-endian) -> one timeline line,
//! and `b"cursor"` -> the id (u64 big-endian) of the last journal record triage has taken
//! into account. A timeline only grows, so a change writes the Call's head and its new lines
//! only (a Call with a thousand merged presses is not rewritten whole at every press). The
//! changes and the cursor are saved in one atomic batch, so after a crash triage resumes from
//! a cursor that matches the Calls. Writing a line again under its index is harmless.

use jiff::Timestamp;

use super::{Store, StoreError};
use crate::model::{Call, CallState};

const OPEN: u8 = b'o';
const CLOSED: u8 = b'c';
const LINE: u8 = b't';
const CURSOR: &[u8] = b"cursor";

/// How far before `since` the backward scan of closed Calls goes on, in case `opened_at`
/// does not grow strictly with the id (clock steps, late Signals).
const SCAN_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

use super::id_key as key;

/// The id of a Call key (`prefix` + 8 bytes); `None` for other keys (such as `cursor`,
/// which also starts with `c`).
fn id_of(k: &[u8], prefix: u8) -> Option<u64> {
    match k.split_first() {
        Some((&p, rest)) if p == prefix => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

fn line_key(id: u64, index: u32) -> [u8; 13] {
    let mut k = [LINE; 13];
    k[1..9].copy_from_slice(&id.to_be_bytes());
    k[9..].copy_from_slice(&index.to_be_bytes());
    k
}

/// A change of one Call to save: the Call's head (its `timeline` holds only the lines from
/// `first_line` on, the ones not saved yet; it may be empty).
#[derive(Clone, Debug, PartialEq)]
pub struct CallChange {
    /// The Call, with only its new timeline lines.
    pub call: Call,
    /// The index of the first of those lines in the whole timeline.
    pub first_line: u32,
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

/// Serialises a Call's head: every field but the timeline (written as empty).
struct HeadRef<'a>(&'a Call);

impl serde::Serialize for HeadRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let c = self.0;
        let mut st = s.serialize_struct("Call", 15)?;
        st.serialize_field("id", &c.id)?;
        st.serialize_field("priority", &c.priority)?;
        st.serialize_field("state", &c.state)?;
        st.serialize_field("owner", &c.owner)?;
        st.serialize_field("opened_at", &c.opened_at)?;
        st.serialize_field("alarm_count", &c.alarm_count)?;
        st.serialize_field("subscriber", &c.subscriber)?;
        st.serialize_field("account", &c.account)?;
        st.serialize_field("kind", &c.kind)?;
        st.serialize_field("restored", &c.restored)?;
        st.serialize_field("answered_at", &c.answered_at)?;
        st.serialize_field("closed_at", &c.closed_at)?;
        st.serialize_field("outcome", &c.outcome)?;
        st.serialize_field("timeline", &[] as &[crate::model::TimelineEntry])?;
        st.serialize_field("last_signal_id", &c.last_signal_id)?;
        st.end()
    }
}

impl Store {
    /// Saves whole Calls (every timeline line) and, if given, the triage cursor in ONE atomic
    /// batch; see [`Store::save_call_changes`].
    pub fn save_calls(&self, calls: &[Call], cursor: Option<u64>) -> Result<(), StoreError> {
        let changes: Vec<CallChange> = calls
            .iter()
            .map(|c| CallChange {
                call: c.clone(),
                first_line: 0,
            })
            .collect();
        self.save_call_changes(&changes, cursor)
    }

    /// Saves changes of Calls and, if given, the triage cursor in ONE atomic batch. A Call
    /// whose state is `Closed` is written to the closed Calls and removed from the open ones;
    /// any other is written to the open ones and removed from the closed ones (a reopened
    /// Call). Each change's timeline lines are written under their index. Durable when it
    /// returns.
    pub fn save_call_changes(
        &self,
        changes: &[CallChange],
        cursor: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        for ch in changes {
            let c = &ch.call;
            for (i, line) in c.timeline.iter().enumerate() {
                let index = ch.first_line.saturating_add(i as u32);
                let v = serde_json::to_vec(line).map_err(corrupt)?;
                batch.insert(line_key(c.id, index), v);
            }
            // A closing for review is stored with it (`reviews`).
            self.review_of_change(&mut batch, ch)?;
            // A closing is marked to be handed on (`closings`), in the same batch.
            self.closing_of_change(&mut batch, ch)?;
            let v = serde_json::to_vec(&HeadRef(c)).map_err(corrupt)?;
            if c.state == CallState::Closed {
                batch.insert(key(CLOSED, c.id), v);
                batch.remove(key(OPEN, c.id));
            } else {
                batch.insert(key(OPEN, c.id), v);
                // A closed Call that came back to the queue is open again.
                batch.remove(key(CLOSED, c.id));
            }
        }
        if let Some(id) = cursor {
            batch.insert(CURSOR, id.to_be_bytes());
        }
        self.calls.apply_batch(batch)?;
        self.sync()
    }

    /// Appends lines to the end of a Call's stored timeline (dispatch steps of a closed
    /// Call). Only the Call writer calls it, after writing what it had pending, so no other
    /// write races for the same indices. Durable when it returns; the writer puts it with
    /// the changes it writes in one [`Store::together`].
    pub fn append_timeline(
        &self,
        id: u64,
        lines: &[crate::model::TimelineEntry],
    ) -> Result<(), StoreError> {
        let next = match self
            .calls
            .range(line_key(id, 0)..=line_key(id, u32::MAX))
            .next_back()
        {
            Some(item) => {
                let (k, _) = item?;
                k.get(9..13)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| corrupt("short timeline key"))?
                    .saturating_add(1)
            }
            None => 0,
        };
        let mut batch = super::kv::Batch::default();
        for (i, line) in lines.iter().enumerate() {
            let v = serde_json::to_vec(line).map_err(corrupt)?;
            batch.insert(line_key(id, next.saturating_add(i as u32)), v);
        }
        self.calls.apply_batch(batch)?;
        self.sync()
    }

    /// A Call's head (as read without its timeline) with its timeline read from its lines.
    pub fn with_timeline(&self, mut c: Call) -> Result<Call, StoreError> {
        let mut lines = Vec::new();
        for item in self
            .calls
            .range(line_key(c.id, 0)..=line_key(c.id, u32::MAX))
        {
            let (_, v) = item?;
            lines.push(serde_json::from_slice(&v).map_err(corrupt)?);
        }
        c.timeline = lines;
        Ok(c)
    }

    /// Every Call not closed, by id, with its timeline.
    pub fn open_calls(&self) -> Result<Vec<Call>, StoreError> {
        self.open_heads()?
            .into_iter()
            .map(|c| self.with_timeline(c))
            .collect()
    }

    /// Every Call not closed, by id, without its timeline.
    fn open_heads(&self) -> Result<Vec<Call>, StoreError> {
        let mut out = Vec::new();
        for item in self.calls.scan_prefix([OPEN]) {
            let (k, v) = item?;
            if id_of(&k, OPEN).is_some() {
                out.push(decode(&v)?);
            }
        }
        Ok(out)
    }

    /// The Call with this id, open or closed, with its timeline.
    pub fn call(&self, id: u64) -> Result<Option<Call>, StoreError> {
        let head = match self.calls.get(key(OPEN, id))? {
            Some(v) => Some(decode(&v)?),
            None => self
                .calls
                .get(key(CLOSED, id))?
                .map(|v| decode(&v))
                .transpose()?,
        };
        head.map(|c| self.with_timeline(c)).transpose()
    }

    /// The Call with this id, open or closed, WITHOUT its timeline.
    pub fn call_head(&self, id: u64) -> Result<Option<Call>, StoreError> {
        match self.calls.get(key(OPEN, id))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => self
                .calls
                .get(key(CLOSED, id))?
                .map(|v| decode(&v))
                .transpose(),
        }
    }

    /// Every Call, open or closed, opened at or after `since`, by id, WITHOUT its timeline
    /// (for the day's figures). Closed Calls are read from the newest backwards, and the scan
    /// stops once they are well before `since`.
    pub fn calls_opened_since(&self, since: Timestamp) -> Result<Vec<Call>, StoreError> {
        let stop = since.checked_sub(SCAN_SLACK).unwrap_or(Timestamp::MIN);
        let mut out: Vec<Call> = self
            .open_heads()?
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

    /// Every Call, open or closed, opened in `[from, to)`, by id, WITHOUT its timeline (for
    /// the statistics of a period). The closed ones are found by a bisection over their ids
    /// and read from there on, so a period long ago costs its own Calls (and the slack on
    /// either side), not the history after it.
    pub fn calls_opened_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Call>, StoreError> {
        let within = |c: &Call| c.opened_at >= from && c.opened_at < to;
        let mut out: Vec<Call> = self.open_heads()?.into_iter().filter(within).collect();
        let start = super::first_id_from(
            &self.calls,
            CLOSED,
            from.checked_sub(SCAN_SLACK).unwrap_or(Timestamp::MIN),
            |v| decode(v).map(|c| c.opened_at),
        )?;
        let stop = to.checked_add(SCAN_SLACK).unwrap_or(Timestamp::MAX);
        for item in self.calls.range(key(CLOSED, start)..=key(CLOSED, u64::MAX)) {
            let (k, v) = item?;
            if id_of(&k, CLOSED).is_none() {
                continue;
            }
            let c = decode(&v)?;
            if c.opened_at >= stop {
                break;
            }
            if within(&c) {
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

/// What [`Store::delete_closed_call`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallDeleted {
    /// Timeline lines.
    pub lines: usize,
    /// Dispatches.
    pub dispatches: usize,
}

impl Store {
    /// Closed Calls WITHOUT their timeline, by id from `from` on, at most `limit`: for a
    /// sweep that walks them oldest first and stops where they are too new.
    pub fn closed_call_heads_from(&self, from: u64, limit: usize) -> Result<Vec<Call>, StoreError> {
        let mut out = Vec::new();
        for item in self.calls.range(key(CLOSED, from)..=key(CLOSED, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if id_of(&k, CLOSED).is_some() {
                out.push(decode(&v)?);
            }
        }
        Ok(out)
    }

    /// Deletes a closed Call whole: its dispatches first, then in one transaction of the
    /// `calls` tree its head, timeline, review and closing marks, so a deletion cut short
    /// leaves the Call to be found (and deleted) again, never a dispatch without its Call.
    /// `None` (nothing deleted) when the Call is not closed in the store. Durable.
    pub fn delete_closed_call(&self, id: u64) -> Result<Option<CallDeleted>, StoreError> {
        if !self.calls.contains_key(key(CLOSED, id))? || self.calls.contains_key(key(OPEN, id))? {
            return Ok(None);
        }
        let mut out = CallDeleted::default();
        let mut batch = super::kv::Batch::default();
        for d in self.dispatches_of_call(id)? {
            batch.remove(super::id_key(super::dispatches::DISPATCH, d.id));
            batch.remove(super::dispatches::call_key(id, d.id));
            out.dispatches += 1;
        }
        if out.dispatches > 0 {
            self.dispatches.apply_batch(batch)?;
        }
        let mut lines = Vec::new();
        for item in self.calls.range(line_key(id, 0)..=line_key(id, u32::MAX)) {
            lines.push(item?.0);
        }
        out.lines = lines.len();
        let marks = [
            key(CLOSED, id),
            key(super::reviews::REVIEW, id),
            key(super::reviews::PENDING, id),
            key(super::closings::OWED, id),
            key(super::closings::HANDED, id),
        ];
        let deleted = self.calls.transaction(|tx| {
            // Reopened meanwhile: the Call writer owns it again.
            if tx.get(key(OPEN, id))?.is_some() || tx.get(key(CLOSED, id))?.is_none() {
                return Ok(false);
            }
            for k in &lines {
                tx.remove(k)?;
            }
            for k in &marks {
                tx.remove(k)?;
            }
            Ok(true)
        })?;
        self.sync()?;
        Ok(deleted.then_some(out))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{Outcome, Priority, TimelineEntry, TimelineEvent};
    use crate::store::testing::on_each_backend;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    pub(crate) fn call(id: u64, opened: i64, state: CallState) -> Call {
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
            last_signal_id: id,
        }
    }

    on_each_backend! {
    fn empty_store(b) {
        let store = b.open();
        assert_eq!(store.triage_cursor().unwrap(), 0);
        assert_eq!(store.max_call_id().unwrap(), 0);
        assert!(store.open_calls().unwrap().is_empty());
        assert_eq!(store.call(1).unwrap(), None);
        assert!(store.calls_opened_since(ts(0)).unwrap().is_empty());
        assert!(store.calls_opened_between(ts(0), ts(1_000_000)).unwrap().is_empty());
        assert!(store.dispatches_offered_between(ts(0), ts(1_000_000)).unwrap().is_empty());
        assert!(store.work_orders_created_between(ts(0), ts(1_000_000)).unwrap().is_empty());
    }
    }

    on_each_backend! {
    fn a_reopened_call_is_open_again_and_no_longer_closed(b) {
        let store = b.open();
        store
            .save_calls(&[call(5, 1000, CallState::Closed)], Some(3))
            .unwrap();
        assert!(store.open_calls().unwrap().is_empty());
        // Only the new line goes with the head (as the Call writer sends it).
        let mut reopened = call(5, 1000, CallState::Queued);
        reopened.owner = None;
        let line = TimelineEntry {
            at: ts(2000),
            user: None,
            what: TimelineEvent::Reopened {
                reason: "no patrol left".into(),
            },
        };
        let change = CallChange {
            call: Call {
                timeline: vec![line.clone()],
                ..reopened.clone()
            },
            first_line: 1,
        };
        store.save_call_changes(&[change], None).unwrap();
        let open = store.open_calls().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].state, CallState::Queued);
        assert_eq!(open[0].timeline.len(), 2, "the old lines and the new one");
        assert_eq!(open[0].timeline[1], line);
        assert_eq!(store.call(5).unwrap().unwrap().state, CallState::Queued);
        assert_eq!(store.calls_opened_since(ts(0)).unwrap().len(), 1, "once");
        assert_eq!(store.max_call_id().unwrap(), 5);
        assert_eq!(store.triage_cursor().unwrap(), 3);
    }
    }

    on_each_backend! {
    fn save_moves_closed_calls_and_keeps_the_cursor(b) {
        let store = b.open();
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
        let store = b.open();
        assert_eq!(
            store.open_calls().unwrap().len(),
            1,
            "durable across reopen"
        );
    }
    }

    on_each_backend! {
    fn opened_since_takes_open_and_closed(b) {
        let store = b.open();
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

    on_each_backend! {
    fn opened_between_reads_the_period_only(b) {
        let store = b.open();
        let day = 86_400;
        // 200 Calls a quarter of a day apart (every tenth still open); closed Call 152
        // opened out of order (a late Signal), half an hour before 151.
        let mut calls = Vec::new();
        for id in 1..=200u64 {
            let state = if id % 10 == 0 {
                CallState::Queued
            } else {
                CallState::Closed
            };
            let opened = if id == 152 {
                151 * day / 4 - 1800
            } else {
                (id as i64) * day / 4
            };
            calls.push(call(id, opened, state));
        }
        store.save_calls(&calls, Some(200)).unwrap();
        let ids = |from: i64, to: i64| -> Vec<u64> {
            store
                .calls_opened_between(ts(from), ts(to))
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect()
        };
        // Days 10 to 12: ids 40..=47 (id*day/4 in [10 days, 12 days)).
        assert_eq!(ids(10 * day, 12 * day), (40..48).collect::<Vec<_>>());
        // The bounds: `from` in, `to` out.
        assert_eq!(ids(10 * day, 10 * day + 1), [40]);
        assert_eq!(ids(10 * day + 1, 10 * day + day / 4), Vec::<u64>::new());
        // The first and the last, open ones included.
        assert_eq!(ids(0, day / 4 + 1), [1]);
        assert_eq!(ids(49 * day, 60 * day), [196, 197, 198, 199, 200]);
        assert!(ids(60 * day, 70 * day).is_empty());
        // The whole range, and nothing before the first.
        assert_eq!(ids(0, 100 * day).len(), 200);
        assert!(ids(-day, 0).is_empty());
        // An empty period.
        assert!(ids(5 * day, 5 * day).is_empty());
        // The Call out of order is found, its neighbours by id are not in the period.
        assert_eq!(ids(151 * day / 4 - 3600, 151 * day / 4), [152]);
        assert_eq!(ids(151 * day / 4, 152 * day / 4), [151]);
    }
    }

    #[test]
    fn head_is_the_call_without_its_timeline() {
        let mut c: Call = serde_json::from_value(serde_json::json!({
            "id": 7, "priority": 1, "state": "claimed", "owner": "olle",
            "opened_at": "2026-11-23T10:00:00Z", "alarm_count": 2, "subscriber": "S-1",
            "account": "1234", "kind": "Fall", "restored": true,
            "answered_at": "2026-11-23T10:00:30Z", "closed_at": null, "outcome": null,
            "timeline": [{"at": "2026-11-23T10:00:00Z", "type": "restored"}]
        }))
        .unwrap();
        let head = serde_json::to_value(HeadRef(&c)).unwrap();
        c.timeline.clear();
        assert_eq!(
            head,
            serde_json::to_value(&c).unwrap(),
            "every field of Call is in its head"
        );
    }

    on_each_backend! {
    fn changes_append_timeline_lines(b) {
        let store = b.open();
        let mut c: Call = serde_json::from_value(serde_json::json!({
            "id": 3, "priority": 1, "state": "queued", "owner": null,
            "opened_at": "2026-11-23T10:00:00Z", "alarm_count": 1, "subscriber": null,
            "account": "1234", "kind": "Fall", "restored": false,
            "answered_at": null, "closed_at": null, "outcome": null,
            "timeline": [{"at": "2026-11-23T10:00:00Z", "type": "claimed", "user": "a"}]
        }))
        .unwrap();
        store
            .save_call_changes(
                &[CallChange {
                    call: c.clone(),
                    first_line: 0,
                }],
                Some(5),
            )
            .unwrap();
        let mut delta = c.clone();
        delta.alarm_count = 2;
        delta.timeline =
            vec![serde_json::from_value(
            serde_json::json!({"at": "2026-11-23T10:00:05Z", "type": "released", "user": "a"}),
        )
        .unwrap()];
        store
            .save_call_changes(
                &[CallChange {
                    call: delta.clone(),
                    first_line: 1,
                }],
                None,
            )
            .unwrap();
        let back = store.call(3).unwrap().unwrap();
        assert_eq!(back.alarm_count, 2);
        assert_eq!(back.timeline.len(), 2);
        assert_eq!(back.timeline[1], delta.timeline[0]);
        // Writing a line again under its index changes nothing.
        store
            .save_call_changes(
                &[CallChange {
                    call: delta,
                    first_line: 1,
                }],
                None,
            )
            .unwrap();
        assert_eq!(store.open_calls().unwrap()[0].timeline.len(), 2);
        assert_eq!(store.triage_cursor().unwrap(), 5);
        // The figures read heads only.
        c.state = CallState::Closed;
        c.timeline.clear();
        store
            .save_call_changes(
                &[CallChange {
                    call: c,
                    first_line: 2,
                }],
                None,
            )
            .unwrap();
        assert!(store.open_calls().unwrap().is_empty());
        assert_eq!(store.call(3).unwrap().unwrap().timeline.len(), 2);
        let today = store
            .calls_opened_since(Timestamp::from_second(0).unwrap())
            .unwrap();
        assert_eq!(today.len(), 1);
        assert!(today[0].timeline.is_empty());
    }
    }
}
