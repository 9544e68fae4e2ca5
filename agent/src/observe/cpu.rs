//! CPU busy percentage from `/proc/stat`: the share of non-idle ticks
//! between two readings of the aggregate `cpu` line.

use std::path::{Path, PathBuf};

use super::{ObserveError, read_file};

/// The aggregate counters, in clock ticks since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
    /// idle + iowait: waiting for a disk is not being busy.
    pub idle: u64,
}

/// The first line of `/proc/stat`: `cpu  user nice system idle iowait irq
/// softirq steal guest guest_nice`. Kernels before 2.6.11 have fewer
/// columns (at least four). guest and guest_nice are already counted in
/// user and nice, so they are left out of the total.
pub fn parse_proc_stat_cpu(text: &str) -> Result<CpuTimes, String> {
    let line = text.lines().find(|l| l.starts_with("cpu ")).ok_or("no aggregate `cpu` line")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().map_err(|e| format!("`{v}` in the cpu line: {e}")))
        .collect::<Result<_, _>>()?;
    if values.len() < 4 {
        return Err(format!("the cpu line has {} counters, fewer than 4", values.len()));
    }
    let column = |k: usize| values.get(k).copied().unwrap_or(0);
    let total = (0..8).map(column).fold(0u64, u64::saturating_add);
    Ok(CpuTimes { total, idle: column(3).saturating_add(column(4)) })
}

/// Keeps the previous reading and turns the next one into a percentage.
#[derive(Debug)]
pub struct CpuSampler {
    path: PathBuf,
    previous: Option<CpuTimes>,
}

impl CpuSampler {
    pub fn new(proc: &Path) -> CpuSampler {
        CpuSampler { path: proc.join("stat"), previous: None }
    }

    /// Reads `/proc/stat` and returns the busy percentage since the last
    /// sample (`None` for the first one).
    pub fn sample(&mut self) -> Result<Option<f64>, ObserveError> {
        let text = read_file(self.path.clone())?;
        let times = parse_proc_stat_cpu(&text)
            .map_err(|reason| ObserveError::parse(self.path.display().to_string(), reason))?;
        Ok(self.observe(times))
    }

    /// The busy percentage between the previous reading and `times`.
    /// `None` with no previous reading, when no tick passed, or when the
    /// counters went backwards (CPUs taken offline drop out of the sum):
    /// the reading then becomes the new baseline.
    pub fn observe(&mut self, times: CpuTimes) -> Option<f64> {
        let previous = self.previous.replace(times)?;
        let total = times.total.checked_sub(previous.total)?;
        let idle = times.idle.checked_sub(previous.idle)?;
        if total == 0 || idle > total {
            return None;
        }
        Some((total - idle) as f64 * 100.0 / total as f64)
    }
}
