//! Voice conversations that have not ended: `b"c"` + id (u64 big-endian) -> JSON of an
//! [`OpenConversation`], written when it begins ringing and at its answer, removed when its
//! line is on the Call's timeline. Ids are given out from `b"n"` (the last id, u64
//! big-endian), so they are never reused, also after a restart. What is left at a start was
//! cut short by the stop and is ended then.

use super::{Store, StoreError};
use crate::model::OpenConversation;

const OPEN: u8 = b'c';
const LAST_ID: &[u8] = b"n";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "conversations",
        detail: e.to_string(),
    }
}

impl Store {
    /// A new conversation id (from 1, never given out before), durable when it returns.
    pub fn next_conversation_id(&self) -> Result<u64, StoreError> {
        let next = self.conversations.update_and_fetch(LAST_ID, |old| {
            let last = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some(last.saturating_add(1).to_be_bytes().to_vec())
        })?;
        self.sync()?;
        next.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt("the last id is not 8 bytes"))
    }

    /// Writes an open conversation (new or changed), durable when it returns.
    pub fn save_open_conversation(&self, c: &OpenConversation) -> Result<(), StoreError> {
        self.conversations.insert(
            super::id_key(OPEN, c.id),
            serde_json::to_vec(c).map_err(corrupt)?,
        )?;
        self.sync()
    }

    /// Forgets an open conversation (its line is on the timeline), durable when it returns.
    pub fn remove_open_conversation(&self, id: u64) -> Result<(), StoreError> {
        self.conversations.remove(super::id_key(OPEN, id))?;
        self.sync()
    }

    /// Every open conversation, oldest first.
    pub fn open_conversations(&self) -> Result<Vec<OpenConversation>, StoreError> {
        self.conversations
            .scan_prefix([OPEN])
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(corrupt)
            })
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::CallDirection;
    use crate::store::testing::on_each_backend;

    pub(crate) fn open(id: u64) -> OpenConversation {
        OpenConversation {
            id,
            call: Some(7),
            direction: CallDirection::Inbound,
            party: "unit 1234".into(),
            to_relative: None,
            rang_at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            answered_at: None,
            operator: None,
            recording: None,
        }
    }

    on_each_backend! {
    fn ids_go_on_across_a_restart_and_open_conversations_are_kept_until_removed(b) {
        {
            let s = b.open();
            assert_eq!(s.next_conversation_id().unwrap(), 1);
            assert_eq!(s.next_conversation_id().unwrap(), 2);
            s.save_open_conversation(&open(1)).unwrap();
            s.save_open_conversation(&open(2)).unwrap();
            let mut answered = open(2);
            answered.operator = Some("op".into());
            s.save_open_conversation(&answered).unwrap();
            s.remove_open_conversation(1).unwrap();
        }
        let s = b.open();
        assert_eq!(s.next_conversation_id().unwrap(), 3);
        let left = s.open_conversations().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].id, left[0].operator.as_deref()), (2, Some("op")));
    }
    }

    on_each_backend! {
    fn conversation_ids_taken_from_many_threads_are_unique(b) {
        let store = b.open();
        let other = b.second(&store);
        let mut ids: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let st = if t % 2 == 0 { &store } else { &other };
                    s.spawn(move || {
                        (0..25)
                            .map(|_| st.next_conversation_id().unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        ids.sort_unstable();
        assert_eq!(ids, (1..=200).collect::<Vec<_>>());
        assert_eq!(other.next_conversation_id().unwrap(), 201);
    }
    }
}
