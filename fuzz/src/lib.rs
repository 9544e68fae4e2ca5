//! Coverage-guided fuzzing of patchward's parsers (RELIABILITY T36).

pub mod targets;
