//! Keys in custody: every key and access means of a subscriber's home, how many, and who
//! holds them now, moved only by signed receipts (the forms of seed 001: "Överlämnande av
//! nycklar från larminstallatör till hemtjänsten", the handover "vid byte av
//! hemtjänstutförare", "Återlämnande av nycklar från larmbesvarare till larminstallatör", and
//! "Mottagit / Återlämnat antal nycklar" on the consent). Pure: times are parameters.
//!
//! - The **subscriber** is where keys come from and go back to: the count the person keeps
//!   is not the centre's to track, so handing from the subscriber never runs short, and
//!   handing to them takes the keys out of custody.
//! - Every other holder (an installer by name, the centre's key cabinet, a home-care
//!   provider) holds exactly what signed receipts gave it; a receipt that hands more than
//!   its giver holds is refused when it is signed, so the counts never go negative.
//! - A receipt is written first as **pending** (a provider change makes one for the day it
//!   takes effect) and changes custody only when **signed**, by name, by whoever handed and
//!   whoever received; a pending receipt can be voided with a reason.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::order::{KeyCount, KeyKind, MAX_KEY_COUNT, MAX_KEY_LINES, MAX_REASON_CHARS};

/// Longest name on a receipt (who handed, who received), in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Who holds keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(tag = "holder", rename_all = "snake_case")]
pub enum Holder {
    /// The person (and their family): where keys come from and go back to.
    Subscriber,
    /// An installer, by name.
    Installer {
        /// The installer's name.
        name: String,
    },
    /// The centre's key cabinet.
    Cabinet,
    /// A home-care provider (the directory's id).
    Provider {
        /// The provider's id.
        id: String,
    },
}

/// Why keys change hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoverReason {
    /// Taken in for an installation (subscriber → installer), or left with home care.
    Installation,
    /// Between two providers' groups at a provider change.
    ProviderChange,
    /// Back at the end (home care → installer → subscriber).
    End,
    /// Anything else (a lost key replaced, a key box changed).
    Other,
}

/// Where a receipt stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReceiptState {
    /// Written, not signed: custody has not changed.
    Pending,
    /// Signed: custody changed.
    Signed {
        /// When.
        at: Timestamp,
        /// The name of who handed the keys over.
        handed_by: String,
        /// The name of who received them.
        received_by: String,
        /// The console user who recorded the signatures.
        recorded_by: String,
    },
    /// Withdrawn before it was signed.
    Voided {
        /// When.
        at: Timestamp,
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
}

/// One handover of keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// vakt's number of the receipt.
    pub id: u64,
    /// The subscriber whose keys these are.
    pub subscriber: String,
    /// Who hands them.
    pub from: Holder,
    /// Who receives them.
    pub to: Holder,
    /// How many of what.
    pub items: Vec<KeyCount>,
    /// Why.
    pub reason: HandoverReason,
    /// The order it belongs to, if any.
    pub order: Option<u64>,
    /// When it was written.
    pub written_at: Timestamp,
    /// Who wrote it.
    pub written_by: String,
    /// Where it stands.
    pub state: ReceiptState,
}

/// Why a receipt cannot be written, signed or voided.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// No items, too many lines, a count of 0 or too many, or a kind twice.
    #[error(
        "a receipt lists 1 to {MAX_KEY_LINES} kinds of key, each once, 1 to {MAX_KEY_COUNT} of each"
    )]
    Items,
    /// The same holder on both sides, or a name missing or too long.
    #[error(
        "a receipt needs two different holders, each named (installer names 1 to {MAX_NAME_CHARS} characters)"
    )]
    Holders,
    /// A signature's name missing or too long.
    #[error("both signatures need a name of 1 to {MAX_NAME_CHARS} characters")]
    Signature,
    /// Signed or voided already.
    #[error("receipt {0} is signed or voided already")]
    NotPending(u64),
    /// The giver holds fewer than it would hand.
    #[error("{holder} holds {held} of {kind:?}, not {handed}")]
    Short {
        /// The holder, in words.
        holder: String,
        /// Which kind.
        kind: KeyKind,
        /// How many it holds.
        held: u8,
        /// How many the receipt hands.
        handed: u8,
    },
    /// A void without a reason, or with a reason too long.
    #[error("a reason of 1 to {MAX_REASON_CHARS} characters is needed")]
    Reason,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Subscriber => f.write_str("the subscriber"),
            Holder::Installer { name } => write!(f, "installer {name}"),
            Holder::Cabinet => f.write_str("the key cabinet"),
            Holder::Provider { id } => write!(f, "provider {id}"),
        }
    }
}

fn name_ok(name: &str) -> bool {
    let n = name.trim().chars().count();
    (1..=MAX_NAME_CHARS).contains(&n)
}

fn holder_ok(h: &Holder) -> bool {
    match h {
        Holder::Installer { name } => name_ok(name),
        Holder::Provider { id } => name_ok(id),
        Holder::Subscriber | Holder::Cabinet => true,
    }
}

/// Checks the items and holders of a receipt to be written.
pub fn check_receipt(from: &Holder, to: &Holder, items: &[KeyCount]) -> Result<(), ReceiptError> {
    if items.is_empty() || items.len() > MAX_KEY_LINES {
        return Err(ReceiptError::Items);
    }
    let mut kinds: Vec<KeyKind> = items.iter().map(|k| k.kind).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.len() != items.len()
        || items
            .iter()
            .any(|k| k.count == 0 || k.count > MAX_KEY_COUNT)
    {
        return Err(ReceiptError::Items);
    }
    if from == to || !holder_ok(from) || !holder_ok(to) {
        return Err(ReceiptError::Holders);
    }
    Ok(())
}

/// Who holds how many of what, for one subscriber: what the signed receipts left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Custody {
    /// Per holder (never the subscriber), per kind, a count above zero.
    held: BTreeMap<Holder, BTreeMap<KeyKind, u8>>,
}

/// What one holder holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Holding {
    /// Who.
    #[serde(flatten)]
    pub holder: Holder,
    /// How many of what.
    pub keys: Vec<KeyCount>,
}

impl Custody {
    /// The custody that the receipts (in the order signed) leave; receipts not signed
    /// change nothing. A receipt that would go short is skipped (signing refuses those, so
    /// only a hand-edited store has one).
    pub fn from_receipts<'a>(receipts: impl IntoIterator<Item = &'a Receipt>) -> Custody {
        let mut signed: Vec<&Receipt> = receipts
            .into_iter()
            .filter(|r| matches!(r.state, ReceiptState::Signed { .. }))
            .collect();
        signed.sort_by_key(|r| match &r.state {
            ReceiptState::Signed { at, .. } => (*at, r.id),
            _ => (r.written_at, r.id),
        });
        let mut c = Custody::default();
        for r in signed {
            let _ = c.apply(r);
        }
        c
    }

    /// Every holder with what it holds, in the order of holders.
    pub fn holdings(&self) -> Vec<Holding> {
        self.held
            .keys()
            .map(|h| Holding {
                holder: h.clone(),
                keys: self.of(h),
            })
            .collect()
    }

    /// How many of `kind` `holder` holds.
    pub fn count(&self, holder: &Holder, kind: KeyKind) -> u8 {
        self.held
            .get(holder)
            .and_then(|k| k.get(&kind))
            .copied()
            .unwrap_or(0)
    }

    /// What `holder` holds, kind by kind.
    pub fn of(&self, holder: &Holder) -> Vec<KeyCount> {
        self.held
            .get(holder)
            .map(|k| {
                k.iter()
                    .map(|(kind, count)| KeyCount {
                        kind: *kind,
                        count: *count,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the receipt can move its keys (its giver holds them all).
    pub fn check(&self, r: &Receipt) -> Result<(), ReceiptError> {
        if r.from == Holder::Subscriber {
            return Ok(());
        }
        for k in &r.items {
            let held = self.count(&r.from, k.kind);
            if held < k.count {
                return Err(ReceiptError::Short {
                    holder: r.from.to_string(),
                    kind: k.kind,
                    held,
                    handed: k.count,
                });
            }
        }
        Ok(())
    }

    /// Moves the receipt's keys (all or nothing).
    pub fn apply(&mut self, r: &Receipt) -> Result<(), ReceiptError> {
        self.check(r)?;
        for k in &r.items {
            if r.from != Holder::Subscriber {
                if let Some(held) = self.held.get_mut(&r.from) {
                    let left = held
                        .get(&k.kind)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(k.count);
                    if left == 0 {
                        held.remove(&k.kind);
                    } else {
                        held.insert(k.kind, left);
                    }
                }
            }
            if r.to != Holder::Subscriber {
                let to = self.held.entry(r.to.clone()).or_default();
                let now = to
                    .get(&k.kind)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(k.count);
                to.insert(k.kind, now);
            }
        }
        self.held.retain(|_, kinds| !kinds.is_empty());
        Ok(())
    }

    /// Whether a patrol of `provider` can get in: keys its provider holds, or a digital
    /// lock it has access to.
    pub fn access_for(&self, provider: &str, lock_access: bool) -> PatrolAccess {
        let keys = self.of(&Holder::Provider {
            id: provider.to_owned(),
        });
        PatrolAccess {
            keys,
            digital_lock: lock_access,
        }
    }
}

/// What a patrol's provider has to get into the home.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatrolAccess {
    /// The keys the provider holds.
    pub keys: Vec<KeyCount>,
    /// The provider has access through the home's digital lock.
    pub digital_lock: bool,
}

impl PatrolAccess {
    /// Neither a key nor the lock: the operator is warned before dispatching.
    pub fn none(&self) -> bool {
        self.keys.is_empty() && !self.digital_lock
    }
}

impl Receipt {
    /// Signs it: custody moves (checked against `custody`, which it updates).
    pub fn sign(
        &mut self,
        custody: &mut Custody,
        at: Timestamp,
        handed_by: &str,
        received_by: &str,
        recorded_by: &str,
    ) -> Result<(), ReceiptError> {
        if self.state != ReceiptState::Pending {
            return Err(ReceiptError::NotPending(self.id));
        }
        if !name_ok(handed_by) || !name_ok(received_by) {
            return Err(ReceiptError::Signature);
        }
        custody.apply(self)?;
        self.state = ReceiptState::Signed {
            at,
            handed_by: handed_by.trim().to_owned(),
            received_by: received_by.trim().to_owned(),
            recorded_by: recorded_by.to_owned(),
        };
        Ok(())
    }

    /// Voids a pending receipt, with a reason.
    pub fn void(&mut self, at: Timestamp, by: &str, reason: &str) -> Result<(), ReceiptError> {
        if self.state != ReceiptState::Pending {
            return Err(ReceiptError::NotPending(self.id));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(ReceiptError::Reason);
        }
        self.state = ReceiptState::Voided {
            at,
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
