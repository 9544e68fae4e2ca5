//! Which desired state the agent may act on (G4, T24). A new envelope is
//! accepted only when its signature verifies with the engine key pinned at
//! enrollment, it is addressed to this device, its generation is not lower
//! than the highest seen, and it has not expired. Anything else is refused
//! with its reason and the last good state stays in force. Pure: the time
//! is an argument.

use ed25519_dalek::VerifyingKey;
use patchward_api::desired::DesiredState;
use patchward_api::dsse::{DESIRED_STATE_TYPE, Envelope};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the signature does not verify with the engine key pinned at enrollment: {0}")]
    Signature(String),
    #[error("the payload is not a desired state: {0}")]
    Payload(String),
    #[error("the state is for device {found}, not this one ({expected})")]
    OtherDevice { expected: String, found: String },
    #[error("generation {found} is older than generation {seen}, already seen (a rollback)")]
    Rollback { seen: u64, found: u64 },
    #[error("generation {generation} was seen with other content (a replay or a forgery)")]
    Conflicting { generation: u64 },
    #[error("the state expired at {expires_at} (now {now}); the engine must renew it")]
    Expired { expires_at: jiff::Timestamp, now: jiff::Timestamp },
}

/// The state in force, and the highest generation ever accepted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trusted {
    pub state: DesiredState,
    /// The envelope as received, kept so a restart re-verifies it.
    pub envelope: Envelope,
    pub etag: Option<String>,
}

/// Verifies and decodes `envelope` for `device`, against what is in force.
pub fn accept(
    envelope: &Envelope,
    key: &VerifyingKey,
    device: &str,
    in_force: Option<&Trusted>,
    now: jiff::Timestamp,
) -> Result<DesiredState, Refusal> {
    let payload = patchward_api::dsse::verify(envelope, DESIRED_STATE_TYPE, key)
        .map_err(|e| Refusal::Signature(e.to_string()))?;
    let state: DesiredState = serde_json::from_slice(&payload).map_err(|e| Refusal::Payload(e.to_string()))?;
    if state.device != device {
        return Err(Refusal::OtherDevice { expected: device.to_owned(), found: state.device });
    }
    if let Some(current) = in_force {
        let seen = current.state.generation;
        if state.generation < seen {
            return Err(Refusal::Rollback { seen, found: state.generation });
        }
        // The engine renews a state with the same generation (a new expiry,
        // the same content); anything else under a seen generation is not
        // the engine's.
        if state.generation == seen && !same_content(&state, &current.state) {
            return Err(Refusal::Conflicting { generation: seen });
        }
    }
    if state.expires_at <= now {
        return Err(Refusal::Expired { expires_at: state.expires_at, now });
    }
    Ok(state)
}

/// Whether the state in force may still be acted on at `now` (freeze: an
/// expired state is kept for the record but drives no install).
pub fn fresh(trusted: &Trusted, now: jiff::Timestamp) -> bool {
    now < trusted.state.expires_at
}

/// The time expiry is judged at: the latest the agent has ever read off
/// its clock, so that a clock set back never makes an expired state fresh
/// again (T38). The agent keeps `latest` in its state directory.
pub fn expiry_clock(now: jiff::Timestamp, latest: Option<jiff::Timestamp>) -> jiff::Timestamp {
    latest.map_or(now, |latest| latest.max(now))
}

fn same_content(a: &DesiredState, b: &DesiredState) -> bool {
    let strip = |s: &DesiredState| DesiredState {
        issued_at: jiff::Timestamp::UNIX_EPOCH,
        expires_at: jiff::Timestamp::UNIX_EPOCH,
        ..s.clone()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn state(device: &str, generation: u64, expires: &str) -> DesiredState {
        DesiredState {
            device: device.into(),
            generation,
            policy_revision: "c0ffee".into(),
            catalog_revision: 1,
            issued_at: "2026-11-24T12:00:00Z".parse().unwrap(),
            expires_at: expires.parse().unwrap(),
            mirrors: vec![],
            max_bandwidth_kbps: None,
            items: vec![],
        }
    }

    fn signed(state: &DesiredState, seed: u8) -> Envelope {
        patchward_api::dsse::sign(DESIRED_STATE_TYPE, &serde_json::to_vec(state).unwrap(), &key(seed))
    }

    fn trusted(state: DesiredState) -> Trusted {
        Trusted { envelope: signed(&state, 1), state, etag: None }
    }

    const NOW: &str = "2026-11-24T13:00:00Z";

    #[test]
    fn a_good_state_is_accepted() {
        let now = NOW.parse().unwrap();
        let s = state("ws-1", 3, "2026-11-25T12:00:00Z");
        assert_eq!(accept(&signed(&s, 1), &key(1).verifying_key(), "ws-1", None, now), Ok(s.clone()));
        let older = trusted(state("ws-1", 2, "2026-11-25T12:00:00Z"));
        assert_eq!(accept(&signed(&s, 1), &key(1).verifying_key(), "ws-1", Some(&older), now), Ok(s));
    }

    #[test]
    fn t24_refusals_name_their_reason() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let pinned = key(1).verifying_key();
        let good = state("ws-1", 3, "2026-11-25T12:00:00Z");
        let in_force = trusted(good.clone());

        let forged = signed(&good, 2);
        assert!(matches!(accept(&forged, &pinned, "ws-1", None, now), Err(Refusal::Signature(_))));

        let mut tampered = signed(&good, 1);
        tampered.payload = signed(&state("ws-1", 9, "2026-11-25T12:00:00Z"), 1).payload;
        assert!(matches!(accept(&tampered, &pinned, "ws-1", None, now), Err(Refusal::Signature(_))));

        let other = signed(&state("ws-2", 3, "2026-11-25T12:00:00Z"), 1);
        assert!(matches!(accept(&other, &pinned, "ws-1", None, now), Err(Refusal::OtherDevice { .. })));

        let older = signed(&state("ws-1", 2, "2026-11-26T12:00:00Z"), 1);
        assert_eq!(accept(&older, &pinned, "ws-1", Some(&in_force), now), Err(Refusal::Rollback { seen: 3, found: 2 }));

        let mut replayed = state("ws-1", 3, "2026-11-26T12:00:00Z");
        replayed.policy_revision = "deadbeef".into();
        assert_eq!(
            accept(&signed(&replayed, 1), &pinned, "ws-1", Some(&in_force), now),
            Err(Refusal::Conflicting { generation: 3 })
        );

        let expired = signed(&state("ws-1", 4, "2026-11-24T12:30:00Z"), 1);
        assert!(matches!(accept(&expired, &pinned, "ws-1", Some(&in_force), now), Err(Refusal::Expired { .. })));
    }

    #[test]
    fn a_renewal_of_the_same_generation_is_accepted_and_expiry_freezes() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let pinned = key(1).verifying_key();
        let in_force = trusted(state("ws-1", 3, "2026-11-24T14:00:00Z"));
        let renewed = state("ws-1", 3, "2026-11-25T14:00:00Z");
        assert_eq!(accept(&signed(&renewed, 1), &pinned, "ws-1", Some(&in_force), now), Ok(renewed));
        assert!(fresh(&in_force, now));
        let expired_at: jiff::Timestamp = "2026-11-24T14:00:00Z".parse().unwrap();
        assert!(!fresh(&in_force, expired_at), "expiry is exclusive");
        // The clock is set back a week after the state expired: judged at
        // the latest time seen, it stays expired.
        let set_back: jiff::Timestamp = "2026-11-17T14:00:00Z".parse().unwrap();
        assert!(!fresh(&in_force, expiry_clock(set_back, Some(expired_at))));
        assert_eq!(expiry_clock(expired_at, Some(set_back)), expired_at);
    }
}
