use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A wall-clock time of day, `HH:MM`, from `00:00` to `24:00`.
///
/// `24:00` exists so that an interval can end at midnight of the day it
/// starts on; it is only meaningful as an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    minutes: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a time of day: write it as HH:MM on a 24-hour clock, from 00:00 to 24:00 (quote it in YAML: \"06:00\")"
)]
pub struct LocalTimeError(String);

impl LocalTime {
    pub const MIDNIGHT: LocalTime = LocalTime { minutes: 0 };
    pub const END_OF_DAY: LocalTime = LocalTime { minutes: 24 * 60 };

    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        let minutes = u16::from(hour) * 60 + u16::from(minute);
        (minute < 60 && minutes <= 24 * 60).then_some(LocalTime { minutes })
    }

    /// Minutes since midnight, 0..=1440.
    pub const fn minutes(self) -> u16 {
        self.minutes
    }

    pub const fn hour(self) -> u8 {
        (self.minutes / 60) as u8
    }

    pub const fn minute(self) -> u8 {
        (self.minutes % 60) as u8
    }
}

impl FromStr for LocalTime {
    type Err = LocalTimeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || LocalTimeError(text.to_owned());
        let (hour, minute) = text.split_once(':').ok_or_else(err)?;
        let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(hour) || !two_digits(minute) {
            return Err(err());
        }
        LocalTime::new(hour.parse().map_err(|_| err())?, minute.parse().map_err(|_| err())?).ok_or_else(err)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for LocalTime {
    fn schema_name() -> Cow<'static, str> {
        "LocalTime".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
            "description": "A time of day on a 24-hour clock, HH:MM (24:00 = the end of the day).",
            "examples": ["06:00", "22:00"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_of_day() {
        assert_eq!("00:00".parse(), Ok(LocalTime::MIDNIGHT));
        assert_eq!("24:00".parse(), Ok(LocalTime::END_OF_DAY));
        assert_eq!("06:30".parse::<LocalTime>().map(LocalTime::minutes), Ok(390));
        for bad in ["6:00", "24:01", "25:00", "12:60", "1200", "12:00:00", "", "ab:cd"] {
            assert!(bad.parse::<LocalTime>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        for m in 0..=1440u16 {
            let t = LocalTime::new((m / 60) as u8, (m % 60) as u8).unwrap();
            assert_eq!(t.to_string().parse(), Ok(t));
        }
    }
}
