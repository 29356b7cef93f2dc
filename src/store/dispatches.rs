//! Dispatches: `b"d"` + id (u64 big-endian) -> JSON of a [`Dispatch`], and the index
//! `b"k"` + call id + dispatch id (both u64 big-endian) -> nothing, for a Call's dispatches.
//! Also `b"s"` + patrol id -> the first number (u64 big-endian) of the patrol link's own
//! `seq` towards that patrol not yet reserved ([`Store::reserve_patrol_seqs`]).
//! Every change of a dispatch is written whole (a dispatch is small) and durable when the write
//! returns, before the patrol or the operator is answered, so its clocks survive a restart with
//! their times.

use jiff::Timestamp;

use super::{Store, StoreError};
use crate::model::Dispatch;

pub(super) const DISPATCH: u8 = b'd';
const BY_CALL: u8 = b'k';
const SEQ: u8 = b's';

/// How much a dispatch's offering may run behind a dispatch with a lower id (a clock step)
/// and still be found by [`Store::dispatches_offered_between`].
const SCAN_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

pub(super) fn call_key(call: u64, id: u64) -> [u8; 17] {
    let mut k = [BY_CALL; 17];
    k[1..9].copy_from_slice(&call.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "dispatches",
        detail: e.to_string(),
    }
}

fn decode(v: &[u8]) -> Result<Dispatch, StoreError> {
    serde_json::from_slice(v).map_err(corrupt)
}

impl Store {
    /// Writes dispatches (new or changed) in one atomic batch, durable when it returns.
    pub fn save_dispatches(&self, ds: &[Dispatch]) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        for d in ds {
            batch.insert(
                super::id_key(DISPATCH, d.id),
                serde_json::to_vec(d).map_err(corrupt)?,
            );
            batch.insert(call_key(d.call, d.id), []);
        }
        self.dispatches.apply_batch(batch)?;
        self.sync()
    }

    /// One dispatch.
    pub fn dispatch(&self, id: u64) -> Result<Option<Dispatch>, StoreError> {
        self.dispatches
            .get(super::id_key(DISPATCH, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The dispatches of one Call, oldest first.
    pub fn dispatches_of_call(&self, call: u64) -> Result<Vec<Dispatch>, StoreError> {
        let mut prefix = [BY_CALL; 9];
        prefix[1..].copy_from_slice(&call.to_be_bytes());
        let mut out = Vec::new();
        for item in self.dispatches.scan_prefix(prefix) {
            let (k, _) = item?;
            let id = k
                .get(9..17)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("short index key"))?;
            if let Some(d) = self.dispatch(id)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Every dispatch, oldest first, that `keep` accepts.
    pub fn dispatches_where(
        &self,
        mut keep: impl FnMut(&Dispatch) -> bool,
    ) -> Result<Vec<Dispatch>, StoreError> {
        let mut out = Vec::new();
        for item in self.dispatches.scan_prefix([DISPATCH]) {
            let (_, v) = item?;
            let d = decode(&v)?;
            if keep(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The dispatches still waiting for their patrol (offered, received, accepted).
    pub fn open_dispatches(&self) -> Result<Vec<Dispatch>, StoreError> {
        self.dispatches_where(Dispatch::is_open)
    }

    /// The dispatches offered in `[from, to)`, by id (for the reports and the statistics).
    /// Found by a bisection over the ids (a dispatch's id and offering grow together, up to
    /// [`SCAN_SLACK`] of disorder) and read from there on: a period costs its own
    /// dispatches, not the whole history.
    pub fn dispatches_offered_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Dispatch>, StoreError> {
        let start = super::first_id_from(
            &self.dispatches,
            DISPATCH,
            from.checked_sub(SCAN_SLACK).unwrap_or(Timestamp::MIN),
            |v| decode(v).map(|d| d.offered_at),
        )?;
        let stop = to.checked_add(SCAN_SLACK).unwrap_or(Timestamp::MAX);
        let mut out = Vec::new();
        for item in self
            .dispatches
            .range(super::id_key(DISPATCH, start)..=super::id_key(DISPATCH, u64::MAX))
        {
            let (_, v) = item?;
            let d = decode(&v)?;
            if d.offered_at >= stop {
                break;
            }
            if d.offered_at >= from && d.offered_at < to {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Reserves `count` numbers of the patrol link's own `seq` towards `patrol`: returns the
    /// first of `[first, first + count)`, all above every number reserved for the patrol
    /// before (numbers start at 1). Durable when it returns, so a number is never given
    /// out twice, restarts included.
    pub fn reserve_patrol_seqs(&self, patrol: &str, count: u64) -> Result<u64, StoreError> {
        let mut key = Vec::with_capacity(1 + patrol.len());
        key.push(SEQ);
        key.extend_from_slice(patrol.as_bytes());
        let read = |v: Option<&[u8]>| -> u64 {
            v.and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(1)
                .max(1)
        };
        let old = self.dispatches.fetch_and_update(&key, |v| {
            Some(read(v).saturating_add(count).to_be_bytes().to_vec())
        })?;
        self.sync()?;
        Ok(read(old.as_deref()))
    }

    /// The highest dispatch id stored (0 if none).
    pub fn max_dispatch_id(&self) -> Result<u64, StoreError> {
        super::max_id(&self.dispatches, DISPATCH)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::DispatchState;
    use crate::store::testing::on_each_backend;

    pub(crate) fn d(id: u64, offered: i64, state: DispatchState) -> Dispatch {
        Dispatch {
            id,
            call: 7,
            patrol: "norr-kvall-1".into(),
            provider: "hemtjanst-norr".into(),
            area: "Norr".into(),
            state,
            offered_at: Timestamp::from_second(offered).unwrap(),
            received_at: None,
            accepted_at: None,
            arrived_at: None,
            arrival_method: None,
            ended_at: None,
            limit_mins: 30,
            warned_at_mins: Vec::new(),
            breached: false,
            note: String::new(),
            operator: "olle".into(),
            instruction: String::new(),
        }
    }

    on_each_backend! {
    fn dispatches_round_trip_and_filter(b) {
        let store = b.open();
        assert_eq!(store.max_dispatch_id().unwrap(), 0);
        store
            .save_dispatches(&[
                d(1, 100, DispatchState::Completed),
                d(2, 200, DispatchState::Received),
                d(3, 300, DispatchState::Offered),
            ])
            .unwrap();
        assert_eq!(store.max_dispatch_id().unwrap(), 3);
        let open: Vec<u64> = store
            .open_dispatches()
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(open, [2, 3]);
        let mut changed = d(2, 200, DispatchState::Arrived);
        changed.breached = true;
        store
            .save_dispatches(std::slice::from_ref(&changed))
            .unwrap();
        assert_eq!(store.dispatch(2).unwrap(), Some(changed));
        let between = store
            .dispatches_offered_between(
                Timestamp::from_second(150).unwrap(),
                Timestamp::from_second(300).unwrap(),
            )
            .unwrap();
        assert_eq!(between.len(), 1);
        assert_eq!(between[0].id, 2);
        let mut other = d(4, 400, DispatchState::Offered);
        other.call = 8;
        store.save_dispatches(&[other]).unwrap();
        let of7: Vec<u64> = store
            .dispatches_of_call(7)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(of7, [1, 2, 3]);
        assert_eq!(store.dispatches_of_call(8).unwrap()[0].id, 4);
        assert_eq!(
            store.max_dispatch_id().unwrap(),
            4,
            "the index is not a dispatch"
        );
    }
    }

    on_each_backend! {
    fn offered_between_reads_the_period_only(b) {
        let store = b.open();
        let hour = 3600;
        // 300 dispatches an hour apart; 200 was offered ten minutes before 199.
        let ds: Vec<Dispatch> = (1..=300u64)
            .map(|id| {
                let at = if id == 200 { 199 * hour - 600 } else { id as i64 * hour };
                d(id, at, DispatchState::Completed)
            })
            .collect();
        store.save_dispatches(&ds).unwrap();
        store.reserve_patrol_seqs("norr-kvall-1", 1).unwrap();
        let ids = |from: i64, to: i64| -> Vec<u64> {
            store
                .dispatches_offered_between(
                    Timestamp::from_second(from).unwrap(),
                    Timestamp::from_second(to).unwrap(),
                )
                .unwrap()
                .iter()
                .map(|d| d.id)
                .collect()
        };
        assert_eq!(ids(10 * hour, 13 * hour), [10, 11, 12]);
        assert_eq!(ids(0, hour + 1), [1]);
        assert_eq!(ids(299 * hour, 400 * hour), [299, 300]);
        assert!(ids(301 * hour, 400 * hour).is_empty());
        assert!(ids(0, hour).is_empty());
        assert_eq!(ids(0, 1000 * hour).len(), 300);
        assert_eq!(ids(199 * hour - 900, 199 * hour), [200]);
        assert_eq!(ids(199 * hour - 900, 199 * hour + 1), [199, 200]);
    }
    }

    on_each_backend! {
    fn patrol_seqs_reserved_from_many_threads_never_overlap(b) {
        let store = b.open();
        let other = b.second(&store);
        let mut firsts: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let st = if t % 2 == 0 { &store } else { &other };
                    s.spawn(move || {
                        (0..20)
                            .map(|_| st.reserve_patrol_seqs("natt-1", 3).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        firsts.sort_unstable();
        // 160 reservations of three numbers each: [1, 4), [4, 7), ... with no gap or overlap.
        assert_eq!(firsts, (0..160).map(|i| 1 + 3 * i).collect::<Vec<_>>());
        assert_eq!(store.reserve_patrol_seqs("natt-1", 1).unwrap(), 481);
        assert_eq!(store.reserve_patrol_seqs("natt-2", 1).unwrap(), 1, "per patrol");
        assert_eq!(store.max_dispatch_id().unwrap(), 0, "seqs are not dispatches");
    }
    }
}
