//! Network rate from `/proc/net/dev`: received plus sent bytes over every
//! interface but the loopback, between two readings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{ObserveError, read_file};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets …
/// (8 receive columns) tx_bytes …`. Old kernels wrote no space after the
/// colon once the counter grew (`eth0:1234567`), so the name is split off
/// at the colon, not at whitespace.
pub fn parse_proc_net_dev(text: &str) -> Result<Vec<InterfaceCounters>, String> {
    let mut interfaces = Vec::new();
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.contains('|') || name.is_empty() {
            continue;
        }
        let values: Vec<&str> = counters.split_whitespace().collect();
        if values.len() < 9 {
            return Err(format!("interface {name}: {} columns, fewer than 9", values.len()));
        }
        let number = |k: usize| values[k].parse::<u64>().map_err(|e| format!("interface {name}: `{}`: {e}", values[k]));
        interfaces.push(InterfaceCounters { name: name.to_owned(), rx_bytes: number(0)?, tx_bytes: number(8)? });
    }
    Ok(interfaces)
}

/// Keeps the previous reading and turns the next into kilobits per second.
#[derive(Debug)]
pub struct NetworkSampler {
    path: PathBuf,
    previous: Option<(Timestamp, BTreeMap<String, u64>)>,
}

impl NetworkSampler {
    pub fn new(proc: &Path) -> NetworkSampler {
        NetworkSampler { path: proc.join("net/dev"), previous: None }
    }

    /// Reads `/proc/net/dev` at `now` (from the caller's clock).
    pub fn sample(&mut self, now: Timestamp) -> Result<Option<f64>, ObserveError> {
        let text = read_file(self.path.clone())?;
        let counters =
            parse_proc_net_dev(&text).map_err(|reason| ObserveError::parse(self.path.display().to_string(), reason))?;
        Ok(self.observe(now, &counters))
    }

    /// The rate (kbit/s, 1000 bits) since the previous reading. `None` for
    /// the first reading, and when the clock did not move forward (a clock
    /// set back would give a negative or endless rate): that reading becomes
    /// the baseline. Per interface, a counter below its previous value
    /// means the interface was reset (driver reload, re-created) and counts
    /// what it shows since; an interface new since the last reading counts
    /// from the next one, having no baseline.
    pub fn observe(&mut self, now: Timestamp, counters: &[InterfaceCounters]) -> Option<f64> {
        let current: BTreeMap<String, u64> = counters
            .iter()
            .filter(|c| c.name != "lo")
            .map(|c| (c.name.clone(), c.rx_bytes.saturating_add(c.tx_bytes)))
            .collect();
        let (then, previous) = self.previous.replace((now, current.clone()))?;
        let seconds = now.duration_since(then).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let bytes: u64 = current
            .iter()
            .filter_map(|(name, &bytes)| {
                let before = *previous.get(name)?;
                Some(if bytes >= before { bytes - before } else { bytes })
            })
            .fold(0, u64::saturating_add);
        Some(bytes as f64 * 8.0 / 1000.0 / seconds)
    }
}
