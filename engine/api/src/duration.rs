use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time written as DESIGN.md fixes it: `90s`, `5m`, `72h`, `7d`, or
/// combinations from the largest unit down such as `1d12h`.
///
/// Seconds are the finest grain any policy needs; storing whole seconds keeps
/// equality and hashing exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a duration cannot be empty; write it like `90s`, `5m`, `72h` or `7d`")]
    Empty,
    #[error(
        "`{0}` is not a duration: write a number then a unit (`s`, `m`, `h` or `d`), like `90s`, `5m`, `72h`, `7d` or `1d12h`"
    )]
    Syntax(String),
    #[error("`{0}` is not a duration: units go from the largest down, each once (`1d12h`, not `12h1d`)")]
    Order(String),
    #[error("`{0}` is too long a duration")]
    Overflow(String),
}

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

impl Duration {
    pub const ZERO: Duration = Duration { seconds: 0 };

    pub const fn from_secs(seconds: u64) -> Self {
        Duration { seconds }
    }

    pub const fn as_secs(self) -> u64 {
        self.seconds
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut seconds: u64 = 0;
        let mut rest = text;
        // Index into UNITS of the next unit allowed: enforces largest-first, each once.
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(DurationError::Syntax(text.to_owned()));
            }
            let number: u64 = rest[..digits].parse().map_err(|_| DurationError::Overflow(text.to_owned()))?;
            let unit = rest[digits..].chars().next().ok_or_else(|| DurationError::Syntax(text.to_owned()))?;
            let position = UNITS
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(|| DurationError::Syntax(text.to_owned()))?;
            if position < next_unit {
                return Err(DurationError::Order(text.to_owned()));
            }
            next_unit = position + 1;
            seconds = number
                .checked_mul(UNITS[position].1)
                .and_then(|s| s.checked_add(seconds))
                .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(Duration { seconds })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0s");
        }
        let mut left = self.seconds;
        for (name, size) in UNITS {
            if left >= size {
                write!(f, "{}{}", left / size, name)?;
                left %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
            "minLength": 2,
            "description": "A duration: a number and a unit (s, m, h, d), largest unit first, e.g. `90s`, `5m`, `72h`, `7d`, `1d12h`.",
            "examples": ["60s", "4h", "7d", "1d12h"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_design_names() {
        for (text, seconds) in [
            ("90s", 90),
            ("5m", 300),
            ("72h", 259_200),
            ("7d", 604_800),
            ("1d12h", 129_600),
            ("0h", 0),
            ("1h30m15s", 5_415),
        ] {
            assert_eq!(text.parse::<Duration>(), Ok(Duration::from_secs(seconds)), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "5", "h", "5x", "1h1d", "1h1h", "-5m", "5 m", "1.5h", "99999999999999999999d"] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for seconds in [0, 1, 59, 60, 90, 3_600, 86_399, 86_400, 129_600, 1_000_000] {
            let d = Duration::from_secs(seconds);
            assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
        }
        assert_eq!(Duration::from_secs(129_600).to_string(), "1d12h");
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
    }
}
