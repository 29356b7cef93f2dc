//! Integrations (lock systems) and their bearer tokens for `POST /api/locks/events`.
//!
//! One tree, `integrations`, keyed so that both directions are one lookup; only the SHA-256
//! of a token is stored, never the token:
//!
//! - `n/` + name -> the SHA-256 of the integration's token (32 raw bytes)
//! - `h/` + the SHA-256 (32 raw bytes) -> the name
//!
//! Finding the integration of a presented token is a lookup keyed by its hash. That is safe
//! against timing: the key is the hash of a 256-bit random token, so learning how much of
//! a stored hash a guess shares tells nothing about any token. Both entries of an
//! integration change together, in one atomic batch.

use super::{Store, StoreError};

const NAME: &[u8] = b"n/";
const HASH: &[u8] = b"h/";

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: "integrations",
        detail: detail.into(),
    }
}

impl Store {
    /// Stores the SHA-256 of an integration's new token under `name`, replacing (and so
    /// revoking) any earlier token of that integration, durable when it returns.
    pub fn set_integration_token(
        &self,
        name: &str,
        token_hash: &[u8; 32],
    ) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        if let Some(old) = self.integrations.get(key(NAME, name.as_bytes()))? {
            batch.remove(key(HASH, &old));
        }
        batch.insert(key(NAME, name.as_bytes()), &token_hash[..]);
        batch.insert(key(HASH, token_hash), name.as_bytes());
        self.integrations.apply_batch(batch)?;
        self.sync()
    }

    /// The integration whose token has this SHA-256, if any.
    pub fn integration_for_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<String>, StoreError> {
        let Some(name) = self.integrations.get(key(HASH, token_hash))? else {
            return Ok(None);
        };
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| corrupt("an integration name is not UTF-8"))?;
        // Both entries are written together; a hash entry whose name now points at another
        // hash is stale and does not authenticate.
        let current = self.integrations.get(key(NAME, name.as_bytes()))?;
        Ok(current
            .is_some_and(|h| h.as_ref() == &token_hash[..])
            .then_some(name))
    }

    /// The names of the integrations that have a token, in name order.
    pub fn integrations(&self) -> Result<Vec<String>, StoreError> {
        self.integrations
            .scan_prefix(NAME)
            .map(|item| {
                let (k, _) = item?;
                String::from_utf8(k[NAME.len()..].to_vec())
                    .map_err(|_| corrupt("an integration name is not UTF-8"))
            })
            .collect()
    }

    /// Removes an integration and its token (which stops working at once), durably.
    /// Returns whether it existed.
    pub fn revoke_integration(&self, name: &str) -> Result<bool, StoreError> {
        let Some(old) = self.integrations.get(key(NAME, name.as_bytes()))? else {
            return Ok(false);
        };
        let mut batch = super::kv::Batch::default();
        batch.remove(key(NAME, name.as_bytes()));
        batch.remove(key(HASH, &old));
        self.integrations.apply_batch(batch)?;
        self.sync()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::on_each_backend;
    use crate::store::{new_token, token_hash};

    on_each_backend! {
    fn tokens_find_their_integration_until_replaced_or_revoked(b) {
        let store = b.open();
        assert!(store.integrations().unwrap().is_empty());
        let (token, hash) = new_token();
        assert_eq!(store.integration_for_token(&hash).unwrap(), None);
        store.set_integration_token("phoniro", &hash).unwrap();
        assert_eq!(
            store.integration_for_token(&token_hash(&token)).unwrap(),
            Some("phoniro".into())
        );
        let mut other = hash;
        other[0] ^= 1;
        assert_eq!(store.integration_for_token(&other).unwrap(), None);

        // A second integration; a new token replaces the first one's.
        let (_, carebee) = new_token();
        store.set_integration_token("carebee", &carebee).unwrap();
        let (_, hash2) = new_token();
        store.set_integration_token("phoniro", &hash2).unwrap();
        assert_eq!(store.integration_for_token(&hash).unwrap(), None);
        assert_eq!(
            store.integration_for_token(&hash2).unwrap(),
            Some("phoniro".into())
        );
        assert_eq!(store.integrations().unwrap(), ["carebee", "phoniro"]);

        // Survives a reopen; revoking removes both entries.
        drop(store);
        let store = b.open();
        assert_eq!(
            store.integration_for_token(&carebee).unwrap(),
            Some("carebee".into())
        );
        assert!(store.revoke_integration("phoniro").unwrap());
        assert!(!store.revoke_integration("phoniro").unwrap());
        assert_eq!(store.integration_for_token(&hash2).unwrap(), None);
        assert_eq!(store.integrations().unwrap(), ["carebee"]);
        assert_eq!(
            store.integrations.len().unwrap(),
            2,
            "no stale entries left"
        );
    }
    }
}
