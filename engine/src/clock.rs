//! Time as an input. Everything that depends on the wall clock takes a
//! [`Clock`]; tests pass a [`FakeClock`] and move it by hand, never sleep.

use std::sync::Mutex;

pub trait Clock: Send + Sync {
    fn now(&self) -> jiff::Timestamp;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that moves only when told.
pub struct FakeClock(Mutex<jiff::Timestamp>);

impl FakeClock {
    pub fn new(start: jiff::Timestamp) -> FakeClock {
        FakeClock(Mutex::new(start))
    }

    pub fn set(&self, to: jiff::Timestamp) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }

    /// Moves the clock by `by` (backwards too: clock jumps happen, T38).
    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new secret (token, credential): 32 random bytes, base64url without
/// padding, behind a prefix that says what it is (`pwe_` enrollment, `pwa_`
/// admin, `pwu_` user, `pwd_` device).
pub fn new_secret(prefix: &str) -> Result<String, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_clock_moves_only_when_told_either_way() {
        let clock = FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap());
        assert_eq!(clock.now(), clock.now());
        clock.advance(jiff::SignedDuration::from_hours(2));
        assert_eq!(clock.now().to_string(), "2026-11-24T14:00:00Z");
        clock.advance(jiff::SignedDuration::from_hours(-3));
        assert_eq!(clock.now().to_string(), "2026-11-24T11:00:00Z");
    }

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let (a, b) = (new_secret("pwe_").unwrap(), new_secret("pwe_").unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("pwe_") && a.len() == 4 + 43, "{a}");
    }
}
