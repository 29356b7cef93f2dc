//! The directory of care providers, areas, patrols, routing rules and patrol tokens.
//!
//! One tree, `directory`, with a prefix per kind; values are JSON:
//!
//! - `p/` + provider id -> [`Provider`]
//! - `a/` + area id -> [`Area`]
//! - `t/` + patrol id -> [`Patrol`]
//! - `r/` + the rule's index (u32 big-endian, so the tree keeps the file order) ->
//!   [`RouteRule`]
//! - `k/` + patrol id -> the SHA-256 of the patrol's token (32 raw bytes, never the token)
//! - `s/` + the person's index (u32 big-endian: the file's order) -> [`StaffMember`], the
//!   centre's staff list ([`Store::save_staff`] replaces it whole)
//!
//! [`Store::save_directory`] replaces the first four in one atomic batch; tokens are kept for
//! patrols that are still in the directory and removed for the others, in the same batch.

use super::{Store, StoreError};
use crate::model::Directory;
use crate::model::staff::StaffMember;
use crate::model::{Area, Patrol, Provider, RouteRule};

const PROVIDER: &[u8] = b"p/";
const AREA: &[u8] = b"a/";
const PATROL: &[u8] = b"t/";
const ROUTE: &[u8] = b"r/";
const TOKEN: &[u8] = b"k/";
const STAFF: &[u8] = b"s/";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "directory",
        detail: e.to_string(),
    }
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// Whether two 32-byte hashes are equal, in time that does not depend on where they differ.
fn equal_hashes(a: &[u8], b: &[u8; 32]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Store {
    /// Replaces the whole directory in one atomic batch, durable when it returns. Tokens of patrols no
    /// longer in the directory are removed in the same batch (a patrol added again later
    /// needs a new token). Returns how many tokens were removed.
    pub fn save_directory(&self, dir: &Directory) -> Result<usize, StoreError> {
        let mut batch = super::kv::Batch::default();
        for prefix in [PROVIDER, AREA, PATROL, ROUTE] {
            for item in self.directory.scan_prefix(prefix) {
                batch.remove(item?.0);
            }
        }
        let mut dropped = 0;
        for item in self.directory.scan_prefix(TOKEN) {
            let (k, _) = item?;
            let id = &k[TOKEN.len()..];
            if !dir.patrols.iter().any(|p| p.id.as_bytes() == id) {
                batch.remove(k);
                dropped += 1;
            }
        }
        for p in &dir.providers {
            let v = serde_json::to_vec(p).map_err(corrupt)?;
            batch.insert(key(PROVIDER, p.id.as_bytes()), v);
        }
        for a in &dir.areas {
            let v = serde_json::to_vec(a).map_err(corrupt)?;
            batch.insert(key(AREA, a.id.as_bytes()), v);
        }
        for p in &dir.patrols {
            let v = serde_json::to_vec(p).map_err(corrupt)?;
            batch.insert(key(PATROL, p.id.as_bytes()), v);
        }
        for (i, r) in dir.routes.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| corrupt("more than 2^32 routing rules"))?;
            let v = serde_json::to_vec(r).map_err(corrupt)?;
            batch.insert(key(ROUTE, &i.to_be_bytes()), v);
        }
        self.directory.apply_batch(batch)?;
        self.sync()?;
        Ok(dropped)
    }

    /// The whole directory (empty if none was ever saved): providers, areas and patrols in id
    /// order, routing rules in their saved order.
    pub fn directory(&self) -> Result<Directory, StoreError> {
        Ok(Directory {
            providers: self.scan::<Provider>(PROVIDER)?,
            areas: self.scan::<Area>(AREA)?,
            patrols: self.scan::<Patrol>(PATROL)?,
            routes: self.scan::<RouteRule>(ROUTE)?,
        })
    }

    /// Replaces the centre's staff list in one atomic batch, durable when it returns.
    pub fn save_staff(&self, staff: &[StaffMember]) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        for item in self.directory.scan_prefix(STAFF) {
            batch.remove(item?.0);
        }
        for (i, m) in staff.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| corrupt("more than 2^32 people"))?;
            let v = serde_json::to_vec(m).map_err(corrupt)?;
            batch.insert(key(STAFF, &i.to_be_bytes()), v);
        }
        self.directory.apply_batch(batch)?;
        self.sync()
    }

    /// The centre's staff list, in its file's order (empty if none was imported).
    pub fn staff(&self) -> Result<Vec<StaffMember>, StoreError> {
        self.scan::<StaffMember>(STAFF)
    }

    fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.directory
            .scan_prefix(prefix)
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(corrupt)
            })
            .collect()
    }

    /// The patrol with this id, if it is in the directory.
    pub fn patrol(&self, id: &str) -> Result<Option<Patrol>, StoreError> {
        self.directory
            .get(key(PATROL, id.as_bytes()))?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// Stores the SHA-256 of a patrol's new token (replacing any earlier one), durable when it
    /// returns.
    /// The caller checks that the patrol exists ([`Store::patrol`]).
    pub fn set_patrol_token(
        &self,
        patrol_id: &str,
        token_hash: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.directory
            .insert(key(TOKEN, patrol_id.as_bytes()), &token_hash[..])?;
        self.sync()
    }

    /// Whether `token_hash` is the stored hash of the patrol's token (compared in constant
    /// time). False for a patrol without a token.
    pub fn patrol_token_matches(
        &self,
        patrol_id: &str,
        token_hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        Ok(self
            .directory
            .get(key(TOKEN, patrol_id.as_bytes()))?
            .is_some_and(|stored| equal_hashes(&stored, token_hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::directory::{
        DEMO_AREAS, DEMO_PATROLS, DEMO_PROVIDERS, DEMO_ROUTES, parse_all,
    };
    use crate::store::testing::on_each_backend;

    fn demo() -> Directory {
        parse_all(
            DEMO_PROVIDERS.as_bytes(),
            DEMO_AREAS.as_bytes(),
            DEMO_PATROLS.as_bytes(),
            DEMO_ROUTES.as_bytes(),
        )
        .unwrap()
    }

    on_each_backend! {
    fn save_and_read_back_survives_a_reopen(b) {
        let store = b.open();
        assert!(store.directory().unwrap().is_empty());
        let d = demo();
        assert_eq!(store.save_directory(&d).unwrap(), 0);
        assert_eq!(store.directory().unwrap(), d);
        assert_eq!(store.patrol("natt-1").unwrap().as_ref(), d.patrol("natt-1"));
        assert_eq!(store.patrol("nobody").unwrap(), None);
        drop(store);
        let store = b.open();
        let back = store.directory().unwrap();
        assert_eq!(back, d);
        assert_eq!(back.routes[5].provider, "*", "rules keep their order");
    }
    }

    on_each_backend! {
    fn saving_replaces_the_whole_directory_and_more_than_ten_rules_keep_order(b) {
        let store = b.open();
        store.save_directory(&demo()).unwrap();
        let mut small = demo();
        small.providers.truncate(1);
        small.areas.truncate(1);
        small.patrols.truncate(2);
        let rule = small.routes[0].clone();
        small.routes = (0..300)
            .map(|i| RouteRule {
                area: format!("a{i}"),
                ..rule.clone()
            })
            .collect();
        store.save_directory(&small).unwrap();
        let back = store.directory().unwrap();
        assert_eq!(back, small, "nothing of the first directory is left");
    }
    }

    on_each_backend! {
    fn patrol_tokens_match_only_their_hash_and_go_with_their_patrol(b) {
        let store = b.open();
        let d = demo();
        store.save_directory(&d).unwrap();
        let (token, hash) = crate::store::new_token();
        assert!(
            !store.patrol_token_matches("natt-1", &hash).unwrap(),
            "no token yet"
        );
        store.set_patrol_token("natt-1", &hash).unwrap();
        assert!(store.patrol_token_matches("natt-1", &hash).unwrap());
        assert!(
            store
                .patrol_token_matches("natt-1", &crate::store::token_hash(&token))
                .unwrap()
        );
        assert!(!store.patrol_token_matches("natt-2", &hash).unwrap());
        let mut other = hash;
        other[31] ^= 1;
        assert!(!store.patrol_token_matches("natt-1", &other).unwrap());

        // A new token replaces the old one.
        let (_, hash2) = crate::store::new_token();
        store.set_patrol_token("natt-1", &hash2).unwrap();
        assert!(!store.patrol_token_matches("natt-1", &hash).unwrap());
        assert!(store.patrol_token_matches("natt-1", &hash2).unwrap());
        store.set_patrol_token("norr-dag", &hash).unwrap();

        // The token is not part of the directory, and is not a provider or patrol entry.
        assert_eq!(store.directory().unwrap(), d);

        // Importing again keeps the tokens of patrols still there, drops the others'.
        assert_eq!(store.save_directory(&d).unwrap(), 0);
        assert!(store.patrol_token_matches("natt-1", &hash2).unwrap());
        let mut without = d.clone();
        without.patrols.retain(|p| p.id != "natt-1");
        without
            .routes
            .iter_mut()
            .for_each(|r| r.patrols.retain(|p| p != "natt-1"));
        assert_eq!(store.save_directory(&without).unwrap(), 1);
        assert!(!store.patrol_token_matches("natt-1", &hash2).unwrap());
        assert!(store.patrol_token_matches("norr-dag", &hash).unwrap());
        drop(store);
        let store = b.open();
        assert!(store.patrol_token_matches("norr-dag", &hash).unwrap());
    }
    }

    #[test]
    fn hashes_compare_by_value() {
        let a = [7u8; 32];
        assert!(equal_hashes(&a, &a));
        assert!(!equal_hashes(&a[..31], &a));
        let mut b = a;
        b[0] = 0;
        assert!(!equal_hashes(&b, &a));
    }

    on_each_backend! {
    fn the_staff_list_is_replaced_whole_and_apart_from_the_directory(b) {
        let store = b.open();
        assert!(store.staff().unwrap().is_empty());
        let staff =
            crate::registers::staff::parse_staff(crate::registers::staff::DEMO_STAFF.as_bytes())
                .unwrap();
        store.save_directory(&demo()).unwrap();
        store.save_staff(&staff).unwrap();
        assert_eq!(store.staff().unwrap(), staff, "in the file's order");
        assert_eq!(store.directory().unwrap(), demo(), "not part of the directory");
        // A new directory keeps the list; a new list replaces it whole.
        store.save_directory(&demo()).unwrap();
        assert_eq!(store.staff().unwrap(), staff);
        store.save_staff(&staff[..1]).unwrap();
        assert_eq!(store.staff().unwrap(), staff[..1]);
        drop(store);
        assert_eq!(b.open().staff().unwrap(), staff[..1], "durable");
    }
    }
}
