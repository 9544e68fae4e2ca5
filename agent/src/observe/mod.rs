//! What the idle and restart deployment modes watch, read for real on
//! Linux: CPU and network load from `/proc` (path injectable), their
//! recent history, user input and foreground sessions from logind, the
//! boot id and how the machine last came up, and a systemd unit's
//! invocation id. Every reader is split into a parser (pure, tested with
//! sample files) and the read; time comes from an injected [`Clock`],
//! never from inside a parser.

mod boot;
mod command;
mod cpu;
mod history;
mod logind;
mod net;
mod systemd;

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

pub use boot::{
    BootKind, boot_kind_query, parse_boot_id, parse_boot_kind, parse_boot_time, read_boot_id, read_boot_kind,
    read_boot_time,
};
pub use command::{CommandError, CommandLine, CommandOutput, CommandRunner, ScriptedCommands, SystemCommands};
pub use cpu::{CpuSampler, CpuTimes, parse_proc_stat_cpu};
pub use history::SampleHistory;
pub use logind::{
    ForegroundApps, InputIdle, Logind, LogindSession, idle_since_from_usec, parse_list_sessions, parse_show_session,
    show_session_query,
};
pub use net::{InterfaceCounters, NetworkSampler, parse_proc_net_dev};
pub use systemd::{invocation_id_query, parse_invocation_id, read_invocation_id};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{source_name}: {reason}")]
    Parse { source_name: String, reason: String },
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl ObserveError {
    fn parse(source_name: impl Into<String>, reason: impl Into<String>) -> ObserveError {
        ObserveError::Parse { source_name: source_name.into(), reason: reason.into() }
    }
}

fn read_file(path: PathBuf) -> Result<String, ObserveError> {
    std::fs::read_to_string(&path).map_err(|source| ObserveError::Read { path, source })
}

/// The time, as the observers see it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock the tests move by hand.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<Timestamp>,
}

impl FakeClock {
    pub fn new(start: Timestamp) -> FakeClock {
        FakeClock { now: Mutex::new(start) }
    }

    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
    }

    /// Moves the clock by `by` (negative: a jump backwards) and returns the new time.
    pub fn advance(&self, by: SignedDuration) -> Timestamp {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.saturating_add(by).unwrap_or(*now);
        *now
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// CPU and network load, sampled together on one clock reading per tick
/// and kept for the idle mode's "below X for Y" conditions.
pub struct LoadMonitor<C> {
    pub clock: C,
    pub cpu: CpuSampler,
    pub network: NetworkSampler,
    pub cpu_percent: SampleHistory,
    pub network_kbps: SampleHistory,
}

impl<C: Clock> LoadMonitor<C> {
    /// Reading `proc`, keeping `keep` of history (at most `max_samples` each).
    pub fn new(clock: C, proc: impl Into<PathBuf>, keep: SignedDuration, max_samples: usize) -> LoadMonitor<C> {
        let proc = proc.into();
        LoadMonitor {
            clock,
            cpu: CpuSampler::new(&proc),
            network: NetworkSampler::new(&proc),
            cpu_percent: SampleHistory::new(keep, max_samples),
            network_kbps: SampleHistory::new(keep, max_samples),
        }
    }

    /// Takes one sample of each. The first tick only sets the baseline.
    /// A source that fails is reported and the other still recorded.
    pub fn tick(&mut self) -> Vec<ObserveError> {
        let now = self.clock.now();
        let mut errors = Vec::new();
        match self.cpu.sample() {
            Ok(Some(percent)) => self.cpu_percent.push(now, percent),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        match self.network.sample(now) {
            Ok(Some(kbps)) => self.network_kbps.push(now, kbps),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        errors
    }
}
