//! The subscriber register: subscriber id -> JSON [`Subscriber`].

use super::{Store, StoreError};
use crate::model::Subscriber;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "subscribers",
        detail: e.to_string(),
    }
}

impl Store {
    /// Inserts or replaces subscribers in one atomic batch (all or nothing), durably.
    /// Returns how many of them were new (the rest replaced existing ones), as
    /// [`Store::upsert_devices`] does.
    pub fn upsert_subscribers(&self, subs: &[Subscriber]) -> Result<usize, StoreError> {
        let mut batch = super::kv::Batch::default();
        let mut new = 0;
        for s in subs {
            if !self.subscribers.contains_key(s.id.as_bytes())? {
                new += 1;
            }
            batch.insert(s.id.as_bytes(), serde_json::to_vec(s).map_err(corrupt)?);
        }
        self.subscribers.apply_batch(batch)?;
        self.sync()?;
        Ok(new)
    }

    /// The subscriber with this id, if any.
    pub fn subscriber(&self, id: &str) -> Result<Option<Subscriber>, StoreError> {
        self.subscribers
            .get(id.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// Every subscriber, sorted by id.
    pub fn subscribers(&self) -> Result<Vec<Subscriber>, StoreError> {
        self.subscribers
            .iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(corrupt)
            })
            .collect()
    }

    /// Sets subscriber `id`'s phone to `phone` where it is empty, atomically: an edit saved
    /// at the same moment is never overwritten. True when it was set; false when the
    /// subscriber has a phone or is not stored.
    pub fn fill_subscriber_phone(&self, id: &str, phone: &str) -> Result<bool, StoreError> {
        loop {
            let Some(old) = self.subscribers.get(id.as_bytes())? else {
                return Ok(false);
            };
            let mut s: Subscriber = serde_json::from_slice(&old).map_err(corrupt)?;
            if !s.phone.trim().is_empty() {
                return Ok(false);
            }
            s.phone = phone.to_owned();
            let new = serde_json::to_vec(&s).map_err(corrupt)?;
            if self
                .subscribers
                .compare_and_swap(id.as_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                self.sync()?;
                return Ok(true);
            }
        }
    }

    /// Number of subscribers.
    pub fn subscriber_count(&self) -> Result<usize, StoreError> {
        self.subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Contact};
    use crate::store::testing::on_each_backend;

    fn sub(id: &str, name: &str) -> Subscriber {
        Subscriber {
            id: id.into(),
            name: name.into(),
            personal_number: "19400101-1234".into(),
            address: "Storgatan 1".into(),
            city: "Umeå".into(),
            access: Access {
                keys: 2,
                door_code: "1234".into(),
                ..Access::default()
            },
            contacts: vec![Contact {
                name: "Björn Öberg".into(),
                relation: "son".into(),
                phone: "+46 70 123 45 67".into(),
            }],
            language: "sv".into(),
            ..Subscriber::default()
        }
    }

    on_each_backend! {
    fn upsert_get_list_count(b) {
        let store = b.open();
        assert_eq!(store.subscriber_count().unwrap(), 0);
        assert_eq!(store.subscriber("S-1").unwrap(), None);
        let n = store
            .upsert_subscribers(&[sub("S-2", "Åsa Öberg"), sub("S-1", "Bo Ek")])
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            store.subscriber("S-2").unwrap(),
            Some(sub("S-2", "Åsa Öberg"))
        );
        let n = store
            .upsert_subscribers(&[sub("S-1", "Bo Ekström"), sub("S-3", "Cilla")])
            .unwrap();
        assert_eq!(n, 1, "S-1 replaced, S-3 new");
        assert_eq!(store.subscriber_count().unwrap(), 3);
        let all = store.subscribers().unwrap();
        assert_eq!(
            all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["S-1", "S-2", "S-3"]
        );
        assert_eq!(all[0].name, "Bo Ekström");
        assert_eq!(store.upsert_subscribers(&[]).unwrap(), 0);
    }
    }
}
