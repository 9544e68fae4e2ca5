//! Maintenance-window arithmetic, shared by the engine (plans, `patchward
//! window`) and the agent (it must never install outside a window).
//!
//! DESIGN's rule: a window is open at instant t exactly when t's wall-clock
//! time in the window's zone falls inside one of its intervals (start
//! inclusive, end exclusive; an interval whose end is not after its start
//! runs into the next day, and its `days` name the day it starts), and no
//! blackout covers t (`from` inclusive, `until` exclusive). Everything else,
//! DST included, follows from evaluating that rule at each instant.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

use crate::{LocalTime, Weekday};

/// One interval: the days it starts on, from `start` until `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntervalRule {
    pub days: Vec<Weekday>,
    pub start: LocalTime,
    pub end: LocalTime,
}

/// A window resolved for evaluation: a zone, intervals and blackouts.
#[derive(Clone, Debug)]
pub struct WindowSchedule {
    zone: TimeZone,
    intervals: Vec<IntervalRule>,
    blackouts: Vec<(Timestamp, Timestamp)>,
}

/// The window opens (`open: true`) or closes at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: Timestamp,
    pub open: bool,
}

fn weekday_of(date: Date) -> Weekday {
    Weekday::ALL[date.weekday().to_monday_zero_offset() as usize]
}

fn minutes_to_time(minutes: u16) -> Time {
    Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0).unwrap_or(Time::midnight())
}

impl WindowSchedule {
    pub fn new(zone: TimeZone, intervals: Vec<IntervalRule>, blackouts: Vec<(Timestamp, Timestamp)>) -> Self {
        WindowSchedule { zone, intervals, blackouts }
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Whether the window is open at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        if self.blackouts.iter().any(|(from, until)| *from <= t && t < *until) {
            return false;
        }
        let local = self.zone.to_datetime(t);
        let today = local.date();
        // Seconds since local midnight, against interval bounds in seconds.
        let now = i64::from(local.hour()) * 3600 + i64::from(local.minute()) * 60 + i64::from(local.second());
        let yesterday = today.yesterday().ok();
        self.intervals.iter().any(|interval| {
            let start = i64::from(interval.start.minutes()) * 60;
            let end = i64::from(interval.end.minutes()) * 60;
            if end > start {
                interval.days.contains(&weekday_of(today)) && start <= now && now < end
            } else {
                (interval.days.contains(&weekday_of(today)) && now >= start)
                    || (yesterday.is_some_and(|y| interval.days.contains(&weekday_of(y))) && now < end)
            }
        })
    }

    /// The next `count` instants after `after` (exclusive) where the window
    /// opens or closes, looking at most `horizon_days` ahead.
    pub fn transitions(&self, after: Timestamp, count: usize, horizon_days: i64) -> Vec<Transition> {
        let mut candidates: Vec<Timestamp> = Vec::new();
        let first_day = self.zone.to_datetime(after).date().yesterday().unwrap_or(Date::MIN);
        let horizon = after.checked_add(jiff::SignedDuration::from_hours(24 * horizon_days)).unwrap_or(Timestamp::MAX);
        let mut day = first_day;
        // Every instant where the wall clock reaches an interval bound...
        while let Ok(midnight) = self.zone.to_ambiguous_timestamp(day.to_datetime(Time::midnight())).earlier() {
            if midnight > horizon {
                break;
            }
            for interval in &self.intervals {
                let start = day.to_datetime(minutes_to_time(interval.start.minutes()));
                let end = if interval.end.minutes() >= 24 * 60 {
                    day.tomorrow().map(|d| d.to_datetime(Time::midnight())).ok()
                } else if interval.end > interval.start {
                    Some(day.to_datetime(minutes_to_time(interval.end.minutes())))
                } else {
                    day.tomorrow().map(|d| d.to_datetime(minutes_to_time(interval.end.minutes()))).ok()
                };
                for bound in std::iter::once(start).chain(end) {
                    self.push_local(bound, &mut candidates);
                }
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        // ...every jump of the zone's offset, and every blackout edge.
        for transition in self.zone.following(after) {
            if transition.timestamp() > horizon {
                break;
            }
            candidates.push(transition.timestamp());
        }
        for (from, until) in &self.blackouts {
            candidates.extend([*from, *until]);
        }
        candidates.retain(|c| *c > after && *c <= horizon);
        candidates.sort();
        candidates.dedup();
        let mut state = self.is_open(after);
        let mut out = Vec::with_capacity(count);
        for candidate in candidates {
            if out.len() == count {
                break;
            }
            let open = self.is_open(candidate);
            if open != state {
                out.push(Transition { at: candidate, open });
                state = open;
            }
        }
        out
    }

    fn push_local(&self, local: DateTime, out: &mut Vec<Timestamp>) {
        let ambiguous = self.zone.to_ambiguous_timestamp(local);
        out.extend(ambiguous.earlier().ok());
        out.extend(ambiguous.later().ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn time(text: &str) -> LocalTime {
        text.parse().unwrap()
    }

    fn schedule(zone: &str, intervals: &[(&[Weekday], &str, &str)], blackouts: &[(&str, &str)]) -> WindowSchedule {
        WindowSchedule::new(
            TimeZone::get(zone).unwrap(),
            intervals
                .iter()
                .map(|(days, start, end)| IntervalRule { days: days.to_vec(), start: time(start), end: time(end) })
                .collect(),
            blackouts.iter().map(|(f, u)| (t(f), t(u))).collect(),
        )
    }

    use Weekday::*;
    const WEEKDAYS: &[Weekday] = &[Mon, Tue, Wed, Thu, Fri];

    #[test]
    fn start_inclusive_end_exclusive_in_the_zone() {
        let w = schedule("Europe/Helsinki", &[(WEEKDAYS, "08:00", "17:00")], &[]);
        // 2026-11-24 is a Tuesday; Helsinki is UTC+2 in November.
        assert!(!w.is_open(t("2026-11-24T05:59:59Z")));
        assert!(w.is_open(t("2026-11-24T06:00:00Z")));
        assert!(w.is_open(t("2026-11-24T14:59:59Z")));
        assert!(!w.is_open(t("2026-11-24T15:00:00Z")));
        assert!(!w.is_open(t("2026-11-28T10:00:00Z")), "Saturday");
    }

    #[test]
    fn an_interval_crossing_midnight_belongs_to_the_day_it_starts() {
        let w = schedule("UTC", &[(WEEKDAYS, "22:00", "04:00")], &[]);
        assert!(w.is_open(t("2026-11-27T23:00:00Z")), "Friday night");
        assert!(w.is_open(t("2026-11-28T03:59:00Z")), "early Saturday, from Friday");
        assert!(!w.is_open(t("2026-11-28T22:30:00Z")), "Saturday night does not start");
        assert!(!w.is_open(t("2026-11-23T02:00:00Z")), "early Monday: Sunday started nothing");
    }

    #[test]
    fn blackouts_close_everything_they_cover() {
        let w = schedule(
            "UTC",
            &[(Weekday::ALL.as_slice(), "00:00", "24:00")],
            &[("2026-12-20T00:00:00Z", "2027-01-02T00:00:00Z")],
        );
        assert!(w.is_open(t("2026-12-19T23:59:59Z")));
        assert!(!w.is_open(t("2026-12-20T00:00:00Z")));
        assert!(!w.is_open(t("2027-01-01T23:59:59Z")));
        assert!(w.is_open(t("2027-01-02T00:00:00Z")));
        assert_eq!(
            w.transitions(t("2026-12-01T00:00:00Z"), 2, 60),
            [
                Transition { at: t("2026-12-20T00:00:00Z"), open: false },
                Transition { at: t("2027-01-02T00:00:00Z"), open: true }
            ]
        );
    }

    #[test]
    fn a_start_in_the_spring_gap_opens_at_the_first_instant_after_it() {
        // Europe/Helsinki skips 03:00–04:00 local on 2026-03-29.
        let w = schedule("Europe/Helsinki", &[(Weekday::ALL.as_slice(), "03:30", "05:00")], &[]);
        let next = w.transitions(t("2026-03-28T12:00:00Z"), 2, 3);
        assert_eq!(next[0], Transition { at: t("2026-03-29T01:00:00Z"), open: true }, "04:00 EEST");
        assert_eq!(next[1], Transition { at: t("2026-03-29T02:00:00Z"), open: false }, "05:00 EEST");
    }

    #[test]
    fn a_start_that_occurs_twice_opens_at_the_first() {
        // Europe/Helsinki repeats 03:00–04:00 local on 2026-10-25.
        let w = schedule("Europe/Helsinki", &[(Weekday::ALL.as_slice(), "03:30", "05:00")], &[]);
        let next = w.transitions(t("2026-10-24T12:00:00Z"), 1, 3);
        assert_eq!(next[0], Transition { at: t("2026-10-25T00:30:00Z"), open: true }, "03:30 EEST, the first");
    }

    #[test]
    fn transitions_alternate_and_increase() {
        let w = schedule("America/New_York", &[(WEEKDAYS, "22:00", "04:00"), (&[Sat], "10:00", "12:00")], &[]);
        let next = w.transitions(t("2026-11-24T12:00:00Z"), 10, 30);
        assert_eq!(next.len(), 10);
        for pair in next.windows(2) {
            assert!(pair[0].at < pair[1].at);
            assert_ne!(pair[0].open, pair[1].open);
        }
        assert!(next[0].open);
    }

    /// An independent computation: walk minute by minute and note changes.
    fn scan(w: &WindowSchedule, after: Timestamp, minutes: i64) -> Vec<Transition> {
        let mut state = w.is_open(after);
        let mut out = Vec::new();
        let start = after.as_second() / 60 * 60 + 60;
        for minute in 0..minutes {
            let at = Timestamp::from_second(start + minute * 60).unwrap();
            let open = w.is_open(at);
            if open != state {
                out.push(Transition { at, open });
                state = open;
            }
        }
        out
    }

    fn arb_interval() -> impl Strategy<Value = IntervalRule> {
        (proptest::collection::vec(0usize..7, 1..4), 0u16..=96, 0u16..=96).prop_filter_map(
            "a non-empty interval",
            |(days, start, end)| {
                let (start, end) = (start * 15, end * 15);
                (start != end && start < 24 * 60).then(|| IntervalRule {
                    days: days.into_iter().map(|d| Weekday::ALL[d]).collect(),
                    start: LocalTime::new((start / 60) as u8, (start % 60) as u8).unwrap(),
                    end: LocalTime::new((end / 60) as u8, (end % 60) as u8).unwrap(),
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The fast transitions equal a minute-by-minute scan, across DST
        /// changes in several zones, with blackouts.
        #[test]
        fn transitions_match_a_minute_scan(
            zone in prop::sample::select(vec!["UTC", "Europe/Helsinki", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
            intervals in proptest::collection::vec(arb_interval(), 1..4),
            start_day in 0i64..365,
            blackout in proptest::option::of((0i64..(8 * 24 * 4), 1i64..(3 * 24 * 4))),
        ) {
            // Start days spread over 2026, so DST changes fall inside the scan.
            let after = Timestamp::from_second(1_767_225_600 + start_day * 86_400 + 7 * 60).unwrap();
            let blackouts = blackout
                .map(|(offset, length)| {
                    let from = Timestamp::from_second(after.as_second() / 900 * 900 + offset * 900).unwrap();
                    vec![(from, Timestamp::from_second(from.as_second() + length * 900).unwrap())]
                })
                .unwrap_or_default();
            let w = WindowSchedule::new(TimeZone::get(zone).unwrap(), intervals, blackouts);
            let scanned = scan(&w, after, 8 * 24 * 60);
            let fast = w.transitions(after, scanned.len(), 9);
            prop_assert_eq!(&fast[..], &scanned[..]);
        }
    }
}
