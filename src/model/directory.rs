//! The directory as it is stored and looked up: care providers, areas, patrols and routing
//! rules. Its CSV import and checks are in `crate::registers::directory`.

use serde::{Deserialize, Serialize};

use super::{Area, Patrol, Provider, RouteRule};

/// The arrival limit of an area whose limit is left empty, and of an area that is not in the
/// directory (seed 001, 2.4: within 30 minutes of receiving the assignment).
pub const DEFAULT_ARRIVAL_LIMIT_MINS: u32 = 30;

/// The whole directory. Providers, areas and patrols are sorted by id; routing rules keep
/// the order of their file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Care providers.
    pub providers: Vec<Provider>,
    /// Areas.
    pub areas: Vec<Area>,
    /// Patrols.
    pub patrols: Vec<Patrol>,
    /// Routing rules, in file order.
    pub routes: Vec<RouteRule>,
}

/// Whether two names are equal ignoring case (and surrounding spaces).
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl Directory {
    /// True when the directory holds nothing (never imported).
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
            && self.areas.is_empty()
            && self.patrols.is_empty()
            && self.routes.is_empty()
    }

    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// The area with this id.
    pub fn area(&self, id: &str) -> Option<&Area> {
        self.areas.iter().find(|a| a.id == id)
    }

    /// The patrol with this id.
    pub fn patrol(&self, id: &str) -> Option<&Patrol> {
        self.patrols.iter().find(|p| p.id == id)
    }

    /// The provider a subscriber's `care_provider` means: the one with exactly this id,
    /// else the one with this name ignoring case (see the module doc).
    pub fn provider_for(&self, care_provider: &str) -> Option<&Provider> {
        let t = care_provider.trim();
        if t.is_empty() {
            return None;
        }
        self.provider(t)
            .or_else(|| self.providers.iter().find(|p| same_name(&p.name, t)))
    }

    /// The area a subscriber's (or device's) `area` means: by id, then by name ignoring case.
    pub fn area_for(&self, area: &str) -> Option<&Area> {
        let t = area.trim();
        if t.is_empty() {
            return None;
        }
        self.area(t)
            .or_else(|| self.areas.iter().find(|a| same_name(&a.name, t)))
    }

    /// The arrival limit for a subscriber's `area` (by id or name), or
    /// [`DEFAULT_ARRIVAL_LIMIT_MINS`] for an area not in the directory.
    pub fn arrival_limit_mins(&self, area: &str) -> u32 {
        self.area_for(area)
            .map_or(DEFAULT_ARRIVAL_LIMIT_MINS, |a| a.arrival_limit_mins)
    }

    /// The patrols of a provider (by id), in id order.
    pub fn patrols_of<'a>(&'a self, provider: &'a str) -> impl Iterator<Item = &'a Patrol> + 'a {
        self.patrols.iter().filter(move |p| p.provider == provider)
    }
}
