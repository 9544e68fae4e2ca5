//! The boot: its id (a new one at every boot, from the kernel), when it
//! happened, and how the machine came up.
//!
//! Cold or warm: Linux keeps no record of how the firmware started it, and
//! `/sys/kernel/reboot/mode` says how the *next* reboot will be done. The
//! signal used is how the *previous* boot ended, from the journal: the
//! systemd target it reached on the way down. `poweroff.target` or
//! `halt.target` means the machine was off, so this boot is cold;
//! `reboot.target` or `kexec.target` means it restarted without losing
//! power, a warm boot. A previous boot that reached neither ended in a
//! crash, a hard reset or a power loss (Unclean: the journal cannot tell
//! a power cut, which is cold, from a watchdog reset, which is warm). It
//! needs a persistent journal (`/var/log/journal`); with a volatile one,
//! or without systemd, the kind is Unknown.

use std::path::Path;

use jiff::Timestamp;

use super::{CommandError, CommandLine, CommandRunner, ObserveError, read_file};

/// `/proc/sys/kernel/random/boot_id`: a UUID, new at every boot.
pub fn parse_boot_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    let well_formed = id.len() == 36
        && id.char_indices().all(|(k, c)| if [8, 13, 18, 23].contains(&k) { c == '-' } else { c.is_ascii_hexdigit() });
    if well_formed { Ok(id.to_ascii_lowercase()) } else { Err(format!("not a boot id: {id:?}")) }
}

pub fn read_boot_id(proc: &Path) -> Result<String, ObserveError> {
    let path = proc.join("sys/kernel/random/boot_id");
    let text = read_file(path.clone())?;
    parse_boot_id(&text).map_err(|reason| ObserveError::parse(path.display().to_string(), reason))
}

/// `/proc/stat`'s `btime`: the boot, in seconds since the epoch.
pub fn parse_boot_time(stat: &str) -> Result<Timestamp, String> {
    let line = stat.lines().find_map(|l| l.strip_prefix("btime ")).ok_or("no btime line")?;
    let seconds: i64 = line.trim().parse().map_err(|e| format!("btime `{}`: {e}", line.trim()))?;
    Timestamp::from_second(seconds).map_err(|e| format!("btime {seconds}: {e}"))
}

pub fn read_boot_time(proc: &Path) -> Result<Timestamp, ObserveError> {
    let path = proc.join("stat");
    let text = read_file(path.clone())?;
    parse_boot_time(&text).map_err(|reason| ObserveError::parse(path.display().to_string(), reason))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootKind {
    /// The previous boot powered off or halted.
    Cold,
    /// The previous boot rebooted (or kexec'd) into this one.
    Warm,
    /// The previous boot ended with no orderly shutdown: crash, reset or power loss.
    Unclean,
    Unknown(String),
}

/// The targets of the previous boot's shutdown, as systemd logged them
/// ("Reached target …", with the unit in the entry's UNIT field).
pub fn boot_kind_query() -> CommandLine {
    CommandLine::new(
        "journalctl",
        [
            "--boot=-1",
            "--quiet",
            "--no-pager",
            "--output=json",
            "--output-fields=UNIT,MESSAGE",
            "UNIT=reboot.target",
            "UNIT=kexec.target",
            "UNIT=poweroff.target",
            "UNIT=halt.target",
        ],
    )
}

/// The JSON lines of [`boot_kind_query`]: the last shutdown target
/// reached decides.
pub fn parse_boot_kind(stdout: &str) -> BootKind {
    let mut kind = BootKind::Unclean;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            return BootKind::Unknown(format!("journalctl printed a line that is not JSON: {line:?}"));
        };
        let unit = entry.get("UNIT").and_then(|v| v.as_str()).unwrap_or("");
        // MESSAGE is an array of bytes when it is not valid UTF-8: skip those.
        let message = entry.get("MESSAGE").and_then(|v| v.as_str()).unwrap_or("");
        if !message.starts_with("Reached target") {
            continue;
        }
        match unit {
            "reboot.target" | "kexec.target" => kind = BootKind::Warm,
            "poweroff.target" | "halt.target" => kind = BootKind::Cold,
            _ => {}
        }
    }
    kind
}

pub fn read_boot_kind(runner: &dyn CommandRunner) -> BootKind {
    let command = boot_kind_query();
    match runner.run(&command) {
        Ok(output) if output.success() => parse_boot_kind(&output.stdout),
        Ok(output) => BootKind::Unknown(CommandError::failed(&command, &output).to_string()),
        Err(e) => BootKind::Unknown(e.to_string()),
    }
}
