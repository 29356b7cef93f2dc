//! A subscriber's life with the alarm, from the order to the end (seed 001): where it stands,
//! the installation that proves the alarm works, the consent, the providers by date, the
//! months billed, and what changed, by whom. Pure: every time is a parameter.
//!
//! # An installation that is proven (seed 001 1.2.3-1.2.8)
//!
//! The installer opens an installation for one device: for `window_mins` minutes, a Signal
//! from that device is its test alarm ([`Life::take_test`]). The subscriber becomes active
//! only when all three hold ([`Life::missing`]): the test alarm was received in the window,
//! the consent ("Samtycke": access with the keys only in an emergency, health information
//! from the case officer) is recorded as given, and every key the order requires was received
//! from the person (signed receipts, [`super::keys`]). Then billing starts with the month of
//! installation, and the care system is told that execution has started (1.2.8).

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::keys::{Custody, Holder};
use super::order::{KeyCount, KeyKind, ProviderPeriod};

/// Most history lines kept on a life (the oldest go first).
pub const MAX_HISTORY: usize = 200;

/// Longest installation window, in minutes.
pub const MAX_WINDOW_MINS: u32 = 24 * 60;

/// Where a subscriber's alarm stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifeStatus {
    /// Ordered, not installed yet (or installed and not yet proven).
    Ordered,
    /// Installed, tested, consent and keys in: the alarm is in service and billed.
    Active,
    /// An end is ordered; the alarm is still in service until it is picked up.
    Ending,
    /// Ended: the device is out of the registry, the keys are back.
    Ended,
}

/// The consent of seed 001's form, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Consent {
    /// The day the person (or a relative) signed it.
    pub signed_on: Date,
    /// Who signed: the person, or the relative's name.
    pub signed_by: String,
    /// The console user who recorded it.
    pub recorded_by: String,
    /// When it was recorded.
    pub recorded_at: Timestamp,
}

/// An installation under way: the window in which the device's test alarm counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Installation {
    /// The device's account.
    pub account: String,
    /// Who opened it (the installer's name).
    pub installer: String,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// The test alarm counts until then.
    pub window_ends: Timestamp,
    /// The test alarm received: its journal id and when.
    pub test: Option<TestAlarm>,
}

/// The installation's test alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestAlarm {
    /// The Signal's journal id.
    pub signal: u64,
    /// When it was received.
    pub at: Timestamp,
}

/// One line of a subscriber's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LifeEvent {
    /// When.
    pub at: Timestamp,
    /// Who (a user, an installer, `care-system:{name}`, `vakt`).
    pub by: String,
    /// What, in words.
    pub what: String,
}

/// What still stands between an installation and an active alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "missing", rename_all = "snake_case")]
pub enum Missing {
    /// No installation opened, or its test alarm not received in the window.
    TestAlarm,
    /// The consent is not recorded.
    Consent,
    /// Fewer keys of a kind received from the person than the order requires.
    Keys {
        /// Which kind.
        kind: KeyKind,
        /// Received.
        have: u8,
        /// Required.
        need: u8,
    },
}

/// A subscriber's life with the alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Life {
    /// The subscriber.
    pub subscriber: String,
    /// Where it stands.
    pub status: LifeStatus,
    /// The day the alarm went into service (billing starts with its month).
    pub installed_on: Option<Date>,
    /// The day it ended (billing ends with its month).
    pub ended_on: Option<Date>,
    /// The providers, each from its first day.
    pub providers: Vec<ProviderPeriod>,
    /// The consent.
    pub consent: Option<Consent>,
    /// The installation under way or done.
    pub installation: Option<Installation>,
    /// What happened, oldest first (at most [`MAX_HISTORY`]).
    pub history: Vec<LifeEvent>,
    /// Earlier periods with the alarm (it ended and was ordered again), oldest first; billed
    /// as the current one is (at most [`MAX_PAST`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past: Vec<Period>,
    /// When retention anonymised it (its subscriber is then a pseudonym,
    /// [`super::retention`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymised: Option<Timestamp>,
    /// On an anonymised life, the municipality its card named (the card is deleted; billing
    /// and a municipality's own visits still go by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub municipality: Option<String>,
}

/// At most this many earlier periods are kept on a life (the oldest goes first).
pub const MAX_PAST: usize = 20;

/// An earlier period with the alarm: installed, ended, and its providers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Period {
    /// The first day in service.
    pub installed_on: Date,
    /// The last day.
    pub ended_on: Date,
    /// The providers of the period, each from its first day.
    pub providers: Vec<ProviderPeriod>,
}

/// Why a life cannot change as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifeError {
    /// Not in a state that allows it.
    #[error("the subscriber's alarm is {0:?}")]
    Status(LifeStatus),
    /// The installation window is 0 or too long.
    #[error("an installation window of 1 to {MAX_WINDOW_MINS} minutes")]
    Window,
    /// Something is still missing to activate.
    #[error("not yet: {0:?}")]
    NotReady(Vec<Missing>),
    /// A name is missing or too long.
    #[error("a name of 1 to 100 characters is needed")]
    Name,
}

fn name_ok(s: &str) -> bool {
    (1..=100).contains(&s.trim().chars().count())
}

impl Life {
    /// A new life for an ordered alarm, with its first provider.
    pub fn ordered(
        subscriber: &str,
        provider: Option<ProviderPeriod>,
        at: Timestamp,
        by: &str,
    ) -> Life {
        let mut l = Life {
            subscriber: subscriber.to_owned(),
            status: LifeStatus::Ordered,
            installed_on: None,
            ended_on: None,
            providers: provider.into_iter().collect(),
            consent: None,
            installation: None,
            history: Vec::new(),
            past: Vec::new(),
            anonymised: None,
            municipality: None,
        };
        l.note(at, by, "alarm ordered");
        l
    }

    /// An ended alarm ordered again (a new alarm for the same subscriber): the ended period
    /// is kept for billing ([`Life::periods`]) and the life starts over as ordered, with a
    /// new installation, consent and keys to come; the history goes on.
    pub fn reorder(
        &mut self,
        provider: Option<ProviderPeriod>,
        at: Timestamp,
        by: &str,
    ) -> Result<(), LifeError> {
        if self.status != LifeStatus::Ended {
            return Err(LifeError::Status(self.status));
        }
        if let (Some(installed_on), Some(ended_on)) = (self.installed_on, self.ended_on) {
            if self.past.len() >= MAX_PAST {
                self.past.remove(0);
            }
            self.past.push(Period {
                installed_on,
                ended_on,
                providers: std::mem::take(&mut self.providers),
            });
        }
        self.status = LifeStatus::Ordered;
        self.installed_on = None;
        self.ended_on = None;
        self.providers = provider.into_iter().collect();
        self.consent = None;
        self.installation = None;
        self.note(at, by, "alarm ordered again");
        Ok(())
    }

    /// Every period with the alarm in service, oldest first: the earlier ones, then the
    /// current one once installed (without an end while it runs).
    pub fn periods(&self) -> Vec<(Date, Option<Date>, &[ProviderPeriod])> {
        let mut out: Vec<(Date, Option<Date>, &[ProviderPeriod])> = self
            .past
            .iter()
            .map(|p| (p.installed_on, Some(p.ended_on), p.providers.as_slice()))
            .collect();
        if let Some(installed) = self.installed_on {
            out.push((installed, self.ended_on, self.providers.as_slice()));
        }
        out
    }

    /// Adds a history line (the oldest goes past [`MAX_HISTORY`]).
    pub fn note(&mut self, at: Timestamp, by: &str, what: impl Into<String>) {
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(LifeEvent {
            at,
            by: by.to_owned(),
            what: what.into(),
        });
    }

    /// Opens an installation of device `account` by `installer` for `window_mins` minutes
    /// (a new one replaces one not yet proven).
    pub fn open_installation(
        &mut self,
        account: &str,
        installer: &str,
        at: Timestamp,
        window_mins: u32,
    ) -> Result<(), LifeError> {
        if self.status != LifeStatus::Ordered {
            return Err(LifeError::Status(self.status));
        }
        if window_mins == 0 || window_mins > MAX_WINDOW_MINS {
            return Err(LifeError::Window);
        }
        if !name_ok(installer) {
            return Err(LifeError::Name);
        }
        let window_ends = at
            .checked_add(jiff::SignedDuration::from_mins(i64::from(window_mins)))
            .unwrap_or(Timestamp::MAX);
        self.installation = Some(Installation {
            account: account.to_owned(),
            installer: installer.trim().to_owned(),
            opened_at: at,
            window_ends,
            test: None,
        });
        self.note(
            at,
            installer.trim(),
            format!("installation of {account} opened for {window_mins} min"),
        );
        Ok(())
    }

    /// A Signal from `account` received at `at` (journal id `signal`): the test alarm if an
    /// installation of that device waits for one and `at` is in its window. Whether it was.
    pub fn take_test(&mut self, account: &str, signal: u64, at: Timestamp) -> bool {
        let Some(i) = &mut self.installation else {
            return false;
        };
        if self.status != LifeStatus::Ordered
            || i.test.is_some()
            || i.account != account
            || at < i.opened_at
            || at >= i.window_ends
        {
            return false;
        }
        i.test = Some(TestAlarm { signal, at });
        let what = format!("test alarm received from {account} (signal {signal})");
        self.note(at, "vakt", what);
        true
    }

    /// Records the consent.
    pub fn record_consent(
        &mut self,
        signed_on: Date,
        signed_by: &str,
        recorded_by: &str,
        at: Timestamp,
    ) -> Result<(), LifeError> {
        if matches!(self.status, LifeStatus::Ended) {
            return Err(LifeError::Status(self.status));
        }
        if !name_ok(signed_by) {
            return Err(LifeError::Name);
        }
        self.consent = Some(Consent {
            signed_on,
            signed_by: signed_by.trim().to_owned(),
            recorded_by: recorded_by.to_owned(),
            recorded_at: at,
        });
        self.note(
            at,
            recorded_by,
            format!("consent signed on {signed_on} by {}", signed_by.trim()),
        );
        Ok(())
    }

    /// What still stands between the installation and an active alarm: the test alarm, the
    /// consent, and every key `required` received from the person (held by anyone but the
    /// person in `custody`).
    pub fn missing(&self, required: &[KeyCount], custody: &Custody) -> Vec<Missing> {
        let mut out = Vec::new();
        if self.installation.as_ref().and_then(|i| i.test).is_none() {
            out.push(Missing::TestAlarm);
        }
        if self.consent.is_none() {
            out.push(Missing::Consent);
        }
        for k in required {
            let have: u32 = custody
                .holdings()
                .iter()
                .filter(|h| h.holder != Holder::Subscriber)
                .flat_map(|h| h.keys.iter())
                .filter(|c| c.kind == k.kind)
                .map(|c| u32::from(c.count))
                .sum();
            let have = u8::try_from(have).unwrap_or(u8::MAX);
            if have < k.count {
                out.push(Missing::Keys {
                    kind: k.kind,
                    have,
                    need: k.count,
                });
            }
        }
        out
    }

    /// Activates the alarm on `day` when nothing is missing.
    pub fn activate(
        &mut self,
        required: &[KeyCount],
        custody: &Custody,
        day: Date,
        at: Timestamp,
        by: &str,
    ) -> Result<(), LifeError> {
        if self.status != LifeStatus::Ordered {
            return Err(LifeError::Status(self.status));
        }
        let missing = self.missing(required, custody);
        if !missing.is_empty() {
            return Err(LifeError::NotReady(missing));
        }
        self.status = LifeStatus::Active;
        self.installed_on = Some(day);
        self.note(at, by, format!("alarm in service from {day}"));
        Ok(())
    }

    /// A provider from `from` on (a provider change); the periods stay in date order.
    pub fn change_provider(&mut self, provider: &str, from: Date, at: Timestamp, by: &str) {
        self.providers.retain(|p| p.from != from);
        self.providers.push(ProviderPeriod {
            from,
            provider: provider.to_owned(),
        });
        self.providers.sort_by_key(|p| p.from);
        self.note(at, by, format!("provider {provider} from {from}"));
    }

    /// An end is ordered (the alarm stays in service until it is picked up).
    pub fn end_ordered(&mut self, at: Timestamp, by: &str) -> Result<(), LifeError> {
        match self.status {
            LifeStatus::Active | LifeStatus::Ordered => {
                self.status = LifeStatus::Ending;
                self.note(at, by, "end ordered");
                Ok(())
            }
            s => Err(LifeError::Status(s)),
        }
    }

    /// The alarm is picked up on `day`: ended (billing ends with its month).
    pub fn end(&mut self, day: Date, at: Timestamp, by: &str) -> Result<(), LifeError> {
        if self.status == LifeStatus::Ended {
            return Err(LifeError::Status(self.status));
        }
        self.status = LifeStatus::Ended;
        self.ended_on = Some(day);
        self.note(at, by, format!("alarm ended on {day}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
