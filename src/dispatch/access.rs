//! Who can get into a subscriber's home: what a patrol's provider has, for the dispatch
//! dialog, the confirmation of a patrol with nothing, and the assignment's `provider_keys`.
//! Pure: the subscriber, their key receipts and the directory's ids are parameters.
//!
//! Each patrol the operator may pick is shown with what its provider has to get into the
//! home, and the assignment carries it in words (`provider_keys`):
//!
//! - **Keys**: what the provider holds by the subscriber's signed key receipts
//!   ([`crate::model::keys::Custody`]). A subscriber with no signed receipt yet (registered
//!   before vakt kept receipts) has the register's `keys` count as door keys of their own care
//!   provider; the first signed receipt makes the receipts the whole truth.
//! - **Lock access**: the home has a digital lock (`digital_lock_id`) and the patrol's
//!   provider is the subscriber's care provider. The lock system (seed 000) connects a
//!   customer's lock to the provider the decision is given to ("utföraren förlorar tillgång
//!   till kund ... när inget pågående beslut är fördelat"), and the lock events that mark
//!   arrivals ([`crate::dispatch::desk::Desk::lock_opened`]) carry no provider, so no other provider's patrol is
//!   counted as able to open it.
//!
//! A patrol whose provider has neither is sent only when the operator confirms it
//! ([`crate::dispatch::desk::DeskError::NoAccess`]); the confirmation is on the Call's timeline.

use crate::model::Subscriber;
use crate::model::keys::{Custody, PatrolAccess, Receipt, ReceiptState};
use crate::model::order::{KeyCount, KeyKind};

/// A home and what decides who can get in: the subscriber, their care provider's id in
/// the directory, their key receipts.
#[derive(Clone, Debug)]
pub struct HomeAccess {
    /// The subscriber.
    pub subscriber: Subscriber,
    /// Their care provider (the directory's id), if the directory has it.
    pub home_provider: Option<String>,
    /// Their key receipts.
    pub receipts: Vec<Receipt>,
}

impl HomeAccess {
    /// What a patrol of `provider` has ([`patrol_access`]).
    pub fn for_provider(&self, provider: &str) -> PatrolAccess {
        patrol_access(
            &self.subscriber,
            self.home_provider.as_deref(),
            &self.receipts,
            provider,
        )
    }
}

/// What a patrol of `provider` has to get into `sub`'s home (see the module doc):
/// `home_provider` is the directory's id of the subscriber's care provider, `receipts` the
/// subscriber's key receipts.
pub fn patrol_access(
    sub: &Subscriber,
    home_provider: Option<&str>,
    receipts: &[Receipt],
    provider: &str,
) -> PatrolAccess {
    let theirs = home_provider == Some(provider);
    let lock = theirs && !sub.access.digital_lock_id.trim().is_empty();
    let signed = receipts
        .iter()
        .any(|r| matches!(r.state, ReceiptState::Signed { .. }));
    if signed {
        return Custody::from_receipts(receipts).access_for(provider, lock);
    }
    let register = u8::try_from(sub.access.keys).unwrap_or(u8::MAX);
    PatrolAccess {
        keys: if theirs && register > 0 {
            vec![KeyCount {
                kind: KeyKind::Door,
                count: register,
            }]
        } else {
            Vec::new()
        },
        digital_lock: lock,
    }
}
