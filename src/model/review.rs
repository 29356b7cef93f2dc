//! The review of a Call closed without a dispatch and without an emergency service, as it is
//! stored and shown: which closing it is about, and what a supervisor decided. The closing
//! rule that sends a Call here is `crate::triage::closing`; the store keeps one review per
//! Call (its latest such closing), `crate::store` writes it with the closing.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Outcome, Priority};

/// Longest note a supervisor writes with a decision, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// What the supervisor decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    /// The closing stands.
    Accepted,
    /// The Call came back to the queue.
    Reopened,
}

impl ReviewVerdict {
    /// The stable name (`accepted`, `reopened`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Accepted => "accepted",
            ReviewVerdict::Reopened => "reopened",
        }
    }
}

/// A supervisor's decision on a review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewDecision {
    /// Accepted or reopened.
    pub verdict: ReviewVerdict,
    /// The supervisor.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why (required to reopen).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A closing to review: the Call's head at the closing and its `Closed` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Review {
    /// The Call.
    pub call: u64,
    /// The index of the `Closed` line in the Call's timeline (one closing of the Call).
    pub line: u32,
    /// When the Call was opened.
    pub opened_at: Timestamp,
    /// When it was closed.
    pub closed_at: Timestamp,
    /// The operator who closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// The outcome chosen.
    pub outcome: Outcome,
    /// The operator's reason.
    #[serde(default)]
    pub reason: String,
    /// A supervisor's override of the closing rule, if it was one: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    /// What the alarm was, in words.
    pub kind: String,
    /// Its level at the closing.
    pub priority: Priority,
    /// The subscriber, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ReviewDecision>,
}

impl Review {
    /// The review of `call`'s closing `entry` (its timeline line number `line`), if it is a
    /// `Closed` line marked for review. Only the head of `call` is read (its timeline may be
    /// partial).
    pub fn of_closing(
        call: &super::Call,
        entry: &super::TimelineEntry,
        line: u32,
    ) -> Option<Review> {
        match &entry.what {
            super::TimelineEvent::Closed {
                outcome,
                note,
                override_reason,
                review: true,
                ..
            } => Some(Review {
                call: call.id,
                line,
                opened_at: call.opened_at,
                closed_at: entry.at,
                closed_by: entry.user.clone(),
                outcome: *outcome,
                reason: note.clone(),
                override_reason: override_reason.clone(),
                kind: call.kind.clone(),
                priority: call.priority,
                subscriber: call.subscriber.clone(),
                decision: None,
            }),
            _ => None,
        }
    }
}
