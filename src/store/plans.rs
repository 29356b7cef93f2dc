//! Response plans (tree `plans`): subscriber id + `0x00` + version (u32 big-endian) -> JSON
//! of a [`PlanVersion`]. Every save is a new key, so the old versions stay readable and the
//! newest is the last key under the subscriber's prefix. A save takes the next number with
//! a compare-and-swap on an absent key: two supervisors saving at once get two versions,
//! neither overwrites the other.

use super::{Store, StoreError};
use crate::model::plan::{PlanVersion, ResponsePlan};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "plans",
        detail: e.to_string(),
    }
}

fn prefix(subscriber: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(subscriber.len() + 5);
    k.extend_from_slice(subscriber.as_bytes());
    k.push(0);
    k
}

fn key(subscriber: &str, version: u32) -> Vec<u8> {
    let mut k = prefix(subscriber);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn decode(v: &[u8]) -> Result<PlanVersion, StoreError> {
    serde_json::from_slice(v).map_err(corrupt)
}

impl Store {
    /// Saves `plan` as the next version of `subscriber`'s plan, by `user` at `at`,
    /// durably. Returns the version saved.
    pub fn save_plan(
        &self,
        subscriber: &str,
        user: &str,
        at: jiff::Timestamp,
        plan: &ResponsePlan,
    ) -> Result<PlanVersion, StoreError> {
        loop {
            let last = self.plan(subscriber)?.map_or(0, |p| p.version);
            let version = PlanVersion {
                version: last
                    .checked_add(1)
                    .ok_or_else(|| corrupt("too many versions"))?,
                saved_by: user.to_owned(),
                saved_at: at,
                plan: plan.clone(),
            };
            let v = serde_json::to_vec(&version).map_err(corrupt)?;
            let k = key(subscriber, version.version);
            if self
                .plans
                .compare_and_swap(k, None as Option<&[u8]>, Some(v))?
                .is_ok()
            {
                self.sync()?;
                return Ok(version);
            }
        }
    }

    /// The newest version of `subscriber`'s plan, if they have one.
    pub fn plan(&self, subscriber: &str) -> Result<Option<PlanVersion>, StoreError> {
        self.plans
            .scan_prefix(prefix(subscriber))
            .next_back()
            .transpose()?
            .map(|(_, v)| decode(&v))
            .transpose()
    }

    /// Version `version` of `subscriber`'s plan, if it was saved.
    pub fn plan_version(
        &self,
        subscriber: &str,
        version: u32,
    ) -> Result<Option<PlanVersion>, StoreError> {
        self.plans
            .get(key(subscriber, version))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Deletes every version of `subscriber`'s plan (retention of their data). How many
    /// there were. Durable.
    pub fn delete_plans(&self, subscriber: &str) -> Result<usize, StoreError> {
        let mut batch = super::kv::Batch::default();
        let mut n = 0;
        for item in self.plans.scan_prefix(prefix(subscriber)) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        if n > 0 {
            self.plans.apply_batch(batch)?;
            self.sync()?;
        }
        Ok(n)
    }

    /// The newest `limit` versions of `subscriber`'s plan, newest first.
    pub fn plan_versions(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<PlanVersion>, StoreError> {
        self.plans
            .scan_prefix(prefix(subscriber))
            .rev()
            .take(limit)
            .map(|item| {
                let (_, v) = item?;
                decode(&v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::plan::{KindPlan, PlanKind, PlanStep, StepAction};
    use crate::store::testing::on_each_backend;

    fn plan(text: &str) -> ResponsePlan {
        ResponsePlan {
            relatives_first: Some(true),
            instructions: text.into(),
            kinds: vec![KindPlan {
                kind: PlanKind::Fall,
                steps: vec![PlanStep {
                    action: StepAction::TalkToPerson,
                    instructions: "Speak loudly".into(),
                }],
                instructions: String::new(),
            }],
        }
    }

    on_each_backend! {
    fn every_save_is_a_new_version_and_the_old_ones_stay_readable(b) {
        let store = b.open();
        let t = |s: i64| jiff::Timestamp::constant(1_700_000_000 + s, 0);
        assert_eq!(store.plan("S-1").unwrap(), None);
        let v1 = store.save_plan("S-1", "sara", t(1), &plan("one")).unwrap();
        let v2 = store.save_plan("S-1", "nils", t(2), &plan("two")).unwrap();
        // Another subscriber, and one whose id starts like it, have their own numbering.
        let other = store.save_plan("S-10", "sara", t(3), &plan("x")).unwrap();
        assert_eq!((v1.version, v2.version, other.version), (1, 2, 1));
        assert_eq!(store.plan("S-1").unwrap(), Some(v2.clone()));
        assert_eq!(store.plan_version("S-1", 1).unwrap(), Some(v1.clone()));
        assert_eq!(store.plan_version("S-1", 3).unwrap(), None);
        assert_eq!(
            store.plan_versions("S-1", 10).unwrap(),
            vec![v2.clone(), v1.clone()]
        );
        assert_eq!(store.plan_versions("S-1", 1).unwrap(), vec![v2.clone()]);
        assert_eq!(v1.saved_by, "sara");
        assert_eq!(v2.plan.instructions, "two");
        drop(store);
        let store = b.open();
        assert_eq!(store.plan("S-1").unwrap(), Some(v2), "durable");
        assert_eq!(store.plan("S-10").unwrap(), Some(other));
    }
    }
}
