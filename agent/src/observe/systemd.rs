//! A systemd unit's invocation id: a new 128-bit id each time the unit is
//! started, so a changed id is a restart of the service (the restart
//! mode's `service-restart` trigger), even one too quick to see it down.

use super::{CommandLine, CommandRunner, ObserveError};

pub fn invocation_id_query(unit: &str) -> CommandLine {
    CommandLine::new("systemctl", ["show", "-p", "InvocationID", "--value", "--", unit])
}

/// `systemctl show -p InvocationID --value`: 32 hex digits, or an empty
/// line for a unit that is not running (or not loaded).
pub fn parse_invocation_id(stdout: &str) -> Result<Option<String>, String> {
    let id = stdout.trim();
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(id.to_ascii_lowercase()))
    } else {
        Err(format!("not an invocation id: {id:?}"))
    }
}

/// `Ok(None)`: the unit has no current invocation. `Err`: it cannot be
/// told (no systemd, or systemd not running as init), with the reason.
pub fn read_invocation_id(runner: &dyn CommandRunner, unit: &str) -> Result<Option<String>, ObserveError> {
    let command = invocation_id_query(unit);
    let stdout = runner.run_ok(&command)?;
    parse_invocation_id(&stdout).map_err(|reason| ObserveError::parse(command.to_string(), reason))
}
