//! The Windows edge: installed KBs, installed programs, registry values,
//! file versions and file hashes, behind one narrow trait. The real
//! implementation runs the stock tools (`reg.exe`, Windows PowerShell 5.1)
//! whose command lines are written out here as data, and parses their
//! output; both are tested with sample outputs, since Windows cannot run
//! here. On Linux the probe is [`NoWindows`], and detection says Unknown.

use crate::observe::{CommandError, CommandLine, CommandRunner};

#[derive(Debug, thiserror::Error)]
pub enum WindowsProbeError {
    #[error("not a Windows host: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("could not read the output of `{command}`: {reason}")]
    Output { command: String, reason: String },
}

/// An installed program, from the Uninstall keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledProgram {
    /// The registry key it came from.
    pub key: String,
    pub display_name: String,
    pub display_version: Option<String>,
}

/// What detection and inventory need to know of a Windows host.
pub trait WindowsProbe {
    /// The installed updates' ids (`KB5032190`).
    fn installed_hotfixes(&self) -> Result<Vec<String>, WindowsProbeError>;
    /// Programs listed under the Uninstall keys (both registry views).
    fn installed_programs(&self) -> Result<Vec<InstalledProgram>, WindowsProbeError>;
    /// A registry value as text (a DWORD in decimal); `None` when the key
    /// or the value does not exist.
    fn registry_value(&self, key: &str, value: &str) -> Result<Option<String>, WindowsProbeError>;
    /// A file's version resource as `major.minor.build.revision`; `None`
    /// when the file does not exist.
    fn file_version(&self, path: &str) -> Result<Option<String>, WindowsProbeError>;
    /// A file's sha256 in lowercase hex; `None` when it does not exist.
    fn file_sha256(&self, path: &str) -> Result<Option<String>, WindowsProbeError>;
}

/// The probe on a host that is not Windows: every question is Unsupported.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWindows;

impl NoWindows {
    fn unsupported<T>(what: &str) -> Result<T, WindowsProbeError> {
        Err(WindowsProbeError::Unsupported(format!("{what} needs Windows; this is {}", std::env::consts::OS)))
    }
}

impl WindowsProbe for NoWindows {
    fn installed_hotfixes(&self) -> Result<Vec<String>, WindowsProbeError> {
        NoWindows::unsupported("the installed updates")
    }
    fn installed_programs(&self) -> Result<Vec<InstalledProgram>, WindowsProbeError> {
        NoWindows::unsupported("the installed programs")
    }
    fn registry_value(&self, key: &str, value: &str) -> Result<Option<String>, WindowsProbeError> {
        NoWindows::unsupported(&format!("registry value {key}\\{value}"))
    }
    fn file_version(&self, path: &str) -> Result<Option<String>, WindowsProbeError> {
        NoWindows::unsupported(&format!("the file version of {path}"))
    }
    fn file_sha256(&self, path: &str) -> Result<Option<String>, WindowsProbeError> {
        NoWindows::unsupported(&format!("the hash of {path}"))
    }
}

// --- the command lines ----------------------------------------------------

/// `powershell.exe -NoProfile -NonInteractive -Command SCRIPT`.
fn powershell(script: String) -> CommandLine {
    CommandLine::new(
        "powershell.exe",
        ["-NoProfile".to_owned(), "-NonInteractive".to_owned(), "-Command".to_owned(), script],
    )
}

/// A PowerShell single-quoted literal: nothing inside is expanded, and a
/// quote is written twice.
pub fn powershell_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The installed updates, one id a line. `Get-HotFix` (Win32_QuickFixEngineering)
/// lists the KBs of servicing-stack and cumulative updates.
pub fn hotfix_query() -> CommandLine {
    powershell("Get-HotFix | Select-Object -ExpandProperty HotFixID".to_owned())
}

/// The Uninstall keys of both registry views (64-bit and WOW6432Node):
/// `reg query KEY /s` prints every subkey with its values.
pub const UNINSTALL_KEYS: [&str; 2] = [
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
    r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
];

pub fn uninstall_query(key: &str) -> CommandLine {
    CommandLine::new("reg.exe", ["query", key, "/s"])
}

/// `reg query KEY /v VALUE`; `/reg:64` reads the 64-bit view even from a
/// 32-bit process, which is where the catalog's keys live.
pub fn registry_query(key: &str, value: &str) -> CommandLine {
    CommandLine::new("reg.exe", ["query", key, "/v", value, "/reg:64"])
}

/// The version resource's four numbers. `VersionInfo.FileVersion` is the
/// free text the vendor wrote (`10.0.22621.1 (WinBuild.160101.0800)`, and
/// for ntoskrnl it lags the real build), so the parts are read instead.
pub fn file_version_query(path: &str) -> CommandLine {
    powershell(format!(
        "$p = {}; if (Test-Path -LiteralPath $p -PathType Leaf) {{ $v = (Get-Item -LiteralPath $p).VersionInfo; \
'{{0}}.{{1}}.{{2}}.{{3}}' -f $v.FileMajorPart, $v.FileMinorPart, $v.FileBuildPart, $v.FilePrivatePart }} else {{ 'MISSING' }}",
        powershell_literal(path)
    ))
}

pub fn file_hash_query(path: &str) -> CommandLine {
    powershell(format!(
        "$p = {}; if (Test-Path -LiteralPath $p -PathType Leaf) {{ (Get-FileHash -Algorithm SHA256 -LiteralPath $p).Hash }} else {{ 'MISSING' }}",
        powershell_literal(path)
    ))
}

// --- the parsers ----------------------------------------------------------

/// `Get-HotFix | Select-Object -ExpandProperty HotFixID`: one id a line;
/// blank lines and the odd `File 1` placeholder entries are dropped.
pub fn parse_hotfix_ids(stdout: &str) -> Vec<String> {
    let mut ids: Vec<String> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.len() > 2 && l[..2].eq_ignore_ascii_case("KB") && l[2..].bytes().all(|b| b.is_ascii_digit()))
        .map(|l| l.to_ascii_uppercase())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// One value line of `reg query`: four spaces, name, type, data
/// (`    UBR    REG_DWORD    0x116c`). Names may contain single spaces,
/// so the columns are split on runs of four spaces.
fn parse_reg_value_line(line: &str) -> Option<(String, String, String)> {
    let line = line.strip_prefix("    ")?;
    let mut parts = line.splitn(3, "    ");
    let name = parts.next()?.to_owned();
    let kind = parts.next()?.trim().to_owned();
    if !kind.starts_with("REG_") {
        return None;
    }
    let data = parts.next().unwrap_or("").trim_end().to_owned();
    Some((name, kind, data))
}

/// A value's data as text: DWORD and QWORD in decimal (`0x116c` → `4460`,
/// so `atLeast: "4460"` compares numerically), strings as they are.
fn reg_data_text(kind: &str, data: &str) -> Option<String> {
    match kind {
        "REG_DWORD" | "REG_QWORD" | "REG_DWORD_BIG_ENDIAN" => {
            let hex = data.trim().strip_prefix("0x").or_else(|| data.trim().strip_prefix("0X"))?;
            u64::from_str_radix(hex, 16).ok().map(|n| n.to_string())
        }
        _ => Some(data.to_owned()),
    }
}

/// `reg query KEY /v VALUE`: the value's data, or `None` if absent.
pub fn parse_reg_query_value(stdout: &str, value: &str) -> Option<String> {
    stdout
        .lines()
        .filter_map(parse_reg_value_line)
        .find(|(name, _, _)| name.eq_ignore_ascii_case(value) || (value.is_empty() && name == "(Default)"))
        .and_then(|(_, kind, data)| reg_data_text(&kind, &data))
}

/// `reg query …\Uninstall /s`: each subkey with a DisplayName.
pub fn parse_uninstall_entries(stdout: &str) -> Vec<InstalledProgram> {
    let mut programs = Vec::new();
    let mut key: Option<String> = None;
    let mut name: Option<String> = None;
    let mut version: Option<String> = None;
    let mut flush = |key: &mut Option<String>, name: &mut Option<String>, version: &mut Option<String>| {
        if let (Some(k), Some(n)) = (key.take(), name.take()) {
            programs.push(InstalledProgram { key: k, display_name: n, display_version: version.take() });
        }
        *version = None;
    };
    for line in stdout.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HKEY_") {
            flush(&mut key, &mut name, &mut version);
            key = Some(line.trim().to_owned());
        } else if let Some((value, kind, data)) = parse_reg_value_line(line) {
            match value.as_str() {
                "DisplayName" if !data.is_empty() => name = Some(data),
                "DisplayVersion" if !data.is_empty() => version = reg_data_text(&kind, &data),
                _ => {}
            }
        }
    }
    flush(&mut key, &mut name, &mut version);
    programs
}

/// The file-version script's output: four dotted numbers, or `MISSING`.
pub fn parse_file_version(stdout: &str) -> Result<Option<String>, String> {
    let text = stdout.trim();
    if text == "MISSING" {
        return Ok(None);
    }
    // Tolerate FileVersion-style free text after the numbers.
    let version = text.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = version.split('.').collect();
    if parts.is_empty()
        || parts.len() > 4
        || !parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("not a file version: {text:?}"));
    }
    Ok(Some(version.to_owned()))
}

/// `Get-FileHash`'s uppercase hex, or `MISSING`.
pub fn parse_file_hash(stdout: &str) -> Result<Option<String>, String> {
    let text = stdout.trim();
    if text == "MISSING" {
        return Ok(None);
    }
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(text.to_ascii_lowercase()))
    } else {
        Err(format!("not a sha256: {text:?}"))
    }
}

/// The real probe: runs the command lines above.
pub struct CommandWindowsProbe<R> {
    pub runner: R,
}

impl<R: CommandRunner> CommandWindowsProbe<R> {
    fn output_error(command: &CommandLine, reason: String) -> WindowsProbeError {
        WindowsProbeError::Output { command: command.to_string(), reason }
    }
}

impl<R: CommandRunner> WindowsProbe for CommandWindowsProbe<R> {
    fn installed_hotfixes(&self) -> Result<Vec<String>, WindowsProbeError> {
        Ok(parse_hotfix_ids(&self.runner.run_ok(&hotfix_query())?))
    }

    fn installed_programs(&self) -> Result<Vec<InstalledProgram>, WindowsProbeError> {
        let mut programs = Vec::new();
        for key in UNINSTALL_KEYS {
            let command = uninstall_query(key);
            let output = self.runner.run(&command)?;
            // The WOW6432Node key is missing on 32-bit Windows: reg exits 1.
            if output.success() {
                programs.extend(parse_uninstall_entries(&output.stdout));
            }
        }
        Ok(programs)
    }

    fn registry_value(&self, key: &str, value: &str) -> Result<Option<String>, WindowsProbeError> {
        let command = registry_query(key, value);
        let output = self.runner.run(&command)?;
        // reg.exe exits 1 with "unable to find the specified registry key or value".
        match output.code {
            Some(0) => Ok(parse_reg_query_value(&output.stdout, value)),
            Some(1) if output.stderr.contains("unable to find") => Ok(None),
            _ => Err(CommandError::failed(&command, &output).into()),
        }
    }

    fn file_version(&self, path: &str) -> Result<Option<String>, WindowsProbeError> {
        let command = file_version_query(path);
        parse_file_version(&self.runner.run_ok(&command)?).map_err(|reason| Self::output_error(&command, reason))
    }

    fn file_sha256(&self, path: &str) -> Result<Option<String>, WindowsProbeError> {
        let command = file_hash_query(path);
        parse_file_hash(&self.runner.run_ok(&command)?).map_err(|reason| Self::output_error(&command, reason))
    }
}
