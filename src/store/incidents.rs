//! Telecom incidents: `b"i"` + id (u64 big-endian) -> JSON of an [`Incident`]. An incident is
//! written whole at every change (it holds at most the devices of one operator or area),
//! durable when the write returns, before anyone is told.

use super::{Store, StoreError};
use crate::model::Incident;

const INCIDENT: u8 = b'i';

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "incidents",
        detail: e.to_string(),
    }
}

impl Store {
    /// Writes an incident (new or changed), durable when it returns.
    pub fn save_incident(&self, i: &Incident) -> Result<(), StoreError> {
        self.incidents.insert(
            super::id_key(INCIDENT, i.id),
            serde_json::to_vec(i).map_err(corrupt)?,
        )?;
        self.sync()
    }

    /// One incident.
    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.incidents
            .get(super::id_key(INCIDENT, id))?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// The newest incidents first, at most `limit`; only open ones when `open_only`.
    pub fn incidents(&self, open_only: bool, limit: usize) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for item in self.incidents.scan_prefix([INCIDENT]).rev() {
            let (_, v) = item?;
            let i: Incident = serde_json::from_slice(&v).map_err(corrupt)?;
            if open_only && !i.is_open() {
                continue;
            }
            out.push(i);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The highest incident id stored (0 if none).
    pub fn max_incident_id(&self) -> Result<u64, StoreError> {
        super::max_id(&self.incidents, INCIDENT)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{IncidentDevice, IncidentKind};
    use crate::store::testing::on_each_backend;

    pub(crate) fn inc(id: u64, open: bool) -> Incident {
        let t = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        Incident {
            id,
            kind: IncidentKind::TelecomOperator,
            key: "Telia".into(),
            opened_at: t,
            resolved_at: (!open).then_some(t),
            population: 100,
            devices: vec![IncidentDevice {
                account: "1234".into(),
                subscriber: None,
                telecom_operator: Some("Telia".into()),
                silent_since: t,
                restored_at: None,
            }],
            history: Vec::new(),
        }
    }

    on_each_backend! {
    fn incidents_round_trip_newest_first(b) {
        let store = b.open();
        assert_eq!(store.max_incident_id().unwrap(), 0);
        store.save_incident(&inc(1, false)).unwrap();
        store.save_incident(&inc(2, true)).unwrap();
        store.save_incident(&inc(3, false)).unwrap();
        assert_eq!(store.max_incident_id().unwrap(), 3);
        assert_eq!(store.incident(2).unwrap(), Some(inc(2, true)));
        let all: Vec<u64> = store
            .incidents(false, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(all, [3, 2, 1]);
        let open: Vec<u64> = store
            .incidents(true, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(open, [2]);
        assert_eq!(store.incidents(false, 2).unwrap().len(), 2);
    }
    }
}
