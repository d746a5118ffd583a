//! The message lifecycle: one enum of states, one enum of events and one pure
//! transition function. Every state change in the program goes through
//! [`transition`]; the store names the expected prior state in its SQL.

use std::fmt;
use std::str::FromStr;

/// Where a message stands. Stored as TEXT (see the `CHECK` in migrations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageState {
    /// Imported and waiting to be sent.
    Pending,
    /// The row cannot be sent (bad number, empty body…); `reason` says why.
    Invalid,
    /// The number already appears on an earlier row of the campaign.
    Duplicate,
    /// The number is on the suppression list.
    Suppressed,
    /// Claimed for sending: durably marked before the request leaves.
    Sending,
    /// Accepted by the API (has a sid); the API says it is still queued.
    Queued,
    /// Handed to the provider. Final for MMS, which never reports delivery.
    Sent,
    /// The provider confirmed delivery.
    Delivered,
    /// The API reported that the message could not be sent.
    Failed,
    /// The API said the request itself was wrong; never sent.
    Rejected,
    /// A crash or an ambiguous answer: it may or may not have gone out.
    Unknown,
    /// Tracking window ended before a final status; the last status is kept.
    Expired,
    /// Never sent: the campaign's deadline (`--not-after`) passed, or the
    /// operator cancelled the campaign (`bpsms cancel`). Unlike `expired`,
    /// the message certainly did not go out.
    Cancelled,
}

/// How every `unknown` message's reason ends: what is known, and what the
/// operator can do about it.
pub const UNKNOWN_ADVICE: &str = "it may or may not have been sent: check with the recipient or \
     the tenant's Carrier Usage report before texting again; `bpsms retry --state unknown \
     --campaign NAME` sends the campaign's unknown messages again";

/// Every state, in the order reports list them.
pub const ALL_STATES: [MessageState; 13] = [
    MessageState::Pending,
    MessageState::Sending,
    MessageState::Queued,
    MessageState::Sent,
    MessageState::Delivered,
    MessageState::Failed,
    MessageState::Rejected,
    MessageState::Unknown,
    MessageState::Expired,
    MessageState::Cancelled,
    MessageState::Invalid,
    MessageState::Duplicate,
    MessageState::Suppressed,
];

/// Whether a message is a plain SMS or carries media (MMS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Sms,
    Mms,
}

/// What the operator chose for answers that leave it unclear whether the API
/// accepted a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AmbiguousPolicy {
    /// At most once: mark `unknown` and wait for the operator.
    #[default]
    Hold,
    /// At least once: send again.
    Retry,
}

/// A status the API reported for an accepted message, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteStatus {
    Queued,
    Sent,
    Delivered,
    Failed,
    /// Anything else (including `received`): recorded raw, never final.
    Other(String),
}

impl RemoteStatus {
    pub fn parse(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().as_str() {
            "queued" => RemoteStatus::Queued,
            "sent" => RemoteStatus::Sent,
            "delivered" => RemoteStatus::Delivered,
            "failed" => RemoteStatus::Failed,
            other => RemoteStatus::Other(other.to_string()),
        }
    }
}

/// Something that happens to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A sender claims it; the request will leave next.
    Claim,
    /// The API certainly did not accept it (connection refused, 429, …).
    NotAccepted,
    /// The API accepted it and answered with this status.
    Accepted(RemoteStatus),
    /// The API said the request is wrong.
    Rejected,
    /// The answer does not tell whether the message was accepted.
    Ambiguous(AmbiguousPolicy),
    /// A run starts and finds the message still `sending` from a dead run.
    Recover(AmbiguousPolicy),
    /// Get Message reported this status.
    Observed(RemoteStatus),
    /// The tracking window closed.
    TrackingEnded,
    /// The operator asked to send it again.
    Retry,
    /// The deadline passed before it was sent, or the operator cancelled it.
    Cancel,
}

/// A transition that the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message state {from} does not allow {event:?}")]
pub struct InvalidTransition {
    pub from: MessageState,
    pub event: Event,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "pending",
            MessageState::Invalid => "invalid",
            MessageState::Duplicate => "duplicate",
            MessageState::Suppressed => "suppressed",
            MessageState::Sending => "sending",
            MessageState::Queued => "queued",
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Failed => "failed",
            MessageState::Rejected => "rejected",
            MessageState::Unknown => "unknown",
            MessageState::Expired => "expired",
            MessageState::Cancelled => "cancelled",
        }
    }

    /// True when nothing more will happen to the message without an operator.
    pub fn is_final(self, kind: MessageKind) -> bool {
        match self {
            MessageState::Pending | MessageState::Sending | MessageState::Queued => false,
            MessageState::Sent => kind == MessageKind::Mms,
            _ => true,
        }
    }

    /// True for the states in which the API holds the message and Get Message
    /// is still worth calling.
    pub fn is_tracked(self, kind: MessageKind) -> bool {
        matches!(self, MessageState::Queued | MessageState::Sent) && !self.is_final(kind)
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATES
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown message state {s:?}"))
    }
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Sms => "sms",
            MessageKind::Mms => "mms",
        }
    }
}

impl FromStr for MessageKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(MessageKind::Sms),
            "mms" => Ok(MessageKind::Mms),
            other => Err(format!("unknown message kind {other:?}")),
        }
    }
}

impl AmbiguousPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AmbiguousPolicy::Hold => "hold",
            AmbiguousPolicy::Retry => "retry",
        }
    }
}

impl FromStr for AmbiguousPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hold" => Ok(AmbiguousPolicy::Hold),
            "retry" => Ok(AmbiguousPolicy::Retry),
            other => Err(format!("expected hold or retry, got {other:?}")),
        }
    }
}

/// The state an accepted or observed remote status puts a message in.
fn state_for_remote(status: &RemoteStatus, current: MessageState) -> MessageState {
    match status {
        RemoteStatus::Queued => MessageState::Queued,
        RemoteStatus::Sent => MessageState::Sent,
        RemoteStatus::Delivered => MessageState::Delivered,
        RemoteStatus::Failed => MessageState::Failed,
        // An unknown status says nothing we can act on: keep tracking.
        RemoteStatus::Other(_) => match current {
            MessageState::Sending => MessageState::Queued,
            other => other,
        },
    }
}

/// The one place that decides what a message's next state is.
pub fn transition(
    from: MessageState,
    kind: MessageKind,
    event: &Event,
) -> Result<MessageState, InvalidTransition> {
    use MessageState as S;
    let next = match (from, event) {
        (S::Pending, Event::Claim) => Some(S::Sending),
        (S::Sending, Event::NotAccepted) => Some(S::Pending),
        (S::Sending, Event::Accepted(status)) => Some(state_for_remote(status, from)),
        (S::Sending, Event::Rejected) => Some(S::Rejected),
        (S::Sending, Event::Ambiguous(AmbiguousPolicy::Hold))
        | (S::Sending, Event::Recover(AmbiguousPolicy::Hold)) => Some(S::Unknown),
        (S::Sending, Event::Ambiguous(AmbiguousPolicy::Retry))
        | (S::Sending, Event::Recover(AmbiguousPolicy::Retry)) => Some(S::Pending),
        (S::Queued | S::Sent, Event::Observed(status)) if from.is_tracked(kind) => {
            Some(state_for_remote(status, from))
        }
        (S::Queued | S::Sent, Event::TrackingEnded) if from.is_tracked(kind) => Some(S::Expired),
        (S::Pending, Event::Cancel) => Some(S::Cancelled),
        (S::Unknown | S::Failed | S::Rejected | S::Expired | S::Cancelled, Event::Retry) => {
            Some(S::Pending)
        }
        _ => None,
    };
    next.ok_or_else(|| InvalidTransition {
        from,
        event: event.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AmbiguousPolicy as P;
    use Event as E;
    use MessageKind::{Mms, Sms};
    use MessageState as S;
    use RemoteStatus as R;

    #[track_caller]
    fn check(from: MessageState, kind: MessageKind, event: Event, expected: Option<MessageState>) {
        assert_eq!(
            transition(from, kind, &event).ok(),
            expected,
            "{from} + {event:?}"
        );
    }

    #[test]
    fn send_path() {
        check(S::Pending, Sms, E::Claim, Some(S::Sending));
        check(S::Sending, Sms, E::NotAccepted, Some(S::Pending));
        check(S::Sending, Sms, E::Accepted(R::Queued), Some(S::Queued));
        check(S::Sending, Sms, E::Accepted(R::Failed), Some(S::Failed));
        check(
            S::Sending,
            Sms,
            E::Accepted(R::Other("weird".into())),
            Some(S::Queued),
        );
        check(S::Sending, Sms, E::Rejected, Some(S::Rejected));
        check(S::Sending, Sms, E::Ambiguous(P::Hold), Some(S::Unknown));
        check(S::Sending, Sms, E::Ambiguous(P::Retry), Some(S::Pending));
        check(S::Sending, Sms, E::Recover(P::Hold), Some(S::Unknown));
        check(S::Sending, Sms, E::Recover(P::Retry), Some(S::Pending));
    }

    #[test]
    fn import_states_never_send() {
        for state in [S::Invalid, S::Duplicate, S::Suppressed] {
            check(state, Sms, E::Claim, None);
            check(state, Sms, E::Retry, None);
        }
        check(S::Queued, Sms, E::Claim, None);
        check(S::Unknown, Sms, E::Claim, None);
    }

    #[test]
    fn tracking_path() {
        check(S::Queued, Sms, E::Observed(R::Sent), Some(S::Sent));
        check(S::Sent, Sms, E::Observed(R::Delivered), Some(S::Delivered));
        check(S::Queued, Sms, E::Observed(R::Failed), Some(S::Failed));
        check(
            S::Sent,
            Sms,
            E::Observed(R::Other("received".into())),
            Some(S::Sent),
        );
        check(S::Queued, Sms, E::TrackingEnded, Some(S::Expired));
        check(S::Sent, Sms, E::TrackingEnded, Some(S::Expired));
        // MMS: sent is final, nothing more happens.
        check(S::Queued, Mms, E::Observed(R::Sent), Some(S::Sent));
        check(S::Sent, Mms, E::Observed(R::Delivered), None);
        check(S::Sent, Mms, E::TrackingEnded, None);
        // Final states stay final.
        check(S::Delivered, Sms, E::Observed(R::Failed), None);
        check(S::Failed, Sms, E::TrackingEnded, None);
    }

    #[test]
    fn operator_retry() {
        for state in [S::Unknown, S::Failed, S::Rejected, S::Expired, S::Cancelled] {
            check(state, Sms, E::Retry, Some(S::Pending));
        }
        check(S::Delivered, Sms, E::Retry, None);
        check(S::Pending, Sms, E::Retry, None);
    }

    /// Only a message not yet claimed can be cancelled: one in flight or
    /// sent is past the point where cancelling means anything.
    #[test]
    fn only_pending_messages_are_cancelled() {
        check(S::Pending, Sms, E::Cancel, Some(S::Cancelled));
        for state in ALL_STATES.into_iter().filter(|&s| s != S::Pending) {
            check(state, Sms, E::Cancel, None);
        }
        assert!(S::Cancelled.is_final(Sms));
        check(S::Cancelled, Sms, E::Claim, None);
    }

    #[test]
    fn finality() {
        assert!(!S::Sent.is_final(Sms));
        assert!(S::Sent.is_final(Mms));
        assert!(S::Delivered.is_final(Sms));
        assert!(S::Unknown.is_final(Sms));
        assert!(!S::Queued.is_final(Mms));
        assert!(S::Queued.is_tracked(Mms));
        assert!(!S::Sent.is_tracked(Mms));
    }

    #[test]
    fn text_round_trip() {
        for state in ALL_STATES {
            assert_eq!(state.as_str().parse::<MessageState>(), Ok(state));
        }
        assert_eq!(RemoteStatus::parse(" Delivered "), RemoteStatus::Delivered);
        assert_eq!(
            RemoteStatus::parse("UNDELIVERED"),
            RemoteStatus::Other("undelivered".into())
        );
    }
}
