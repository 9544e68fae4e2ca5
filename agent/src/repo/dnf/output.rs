//! What dnf prints that the agent reads: the index records of
//! `repoquery --queryformat` ([`super::RECORD_FORMAT`]) and the transaction
//! table of a simulation (`--assumeno`). Pure: text in, typed rows out, the
//! offending line when a line is not understood (a fuzz target, T36).

use crate::inventory::parse_source_rpm;
use crate::repo::apt::IndexRecord;

/// `E:V-R` as the inventory writes it: the epoch only when it is not 0.
pub(super) fn version_of(evr: &str) -> Option<String> {
    let (epoch, version_release) = evr.split_once(':').unwrap_or(("0", evr));
    if version_release.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match epoch.trim_start_matches('0') {
        "" => version_release.to_owned(),
        epoch => format!("{epoch}:{version_release}"),
    })
}

/// [`RECORD_FORMAT`] lines; the offending line when one is not.
pub fn parse_records(text: &str) -> Result<Vec<IndexRecord>, String> {
    let mut records = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [name, arch, evr, source_rpm, repo] = fields[..] else { return Err(line.to_owned()) };
        let version = version_of(evr).ok_or_else(|| line.to_owned())?;
        let (source, source_version) = match parse_source_rpm(source_rpm) {
            Some(source) => {
                // The binary's epoch is the source's (the inventory's rule).
                let epoch = version.split_once(':').map(|(epoch, _)| epoch);
                let version_release = source.version_release();
                let with_epoch = epoch.map_or(version_release.clone(), |e| format!("{e}:{version_release}"));
                (source.name.to_owned(), with_epoch)
            }
            None => (name.to_owned(), version.clone()),
        };
        let downloadable = !repo.starts_with('@');
        records.push(IndexRecord {
            name: name.into(),
            arch: arch.into(),
            version,
            source,
            source_version,
            downloadable,
        });
    }
    Ok(records)
}

/// What dnf does to one package in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Upgrade,
    Reinstall,
    Downgrade,
    Remove,
}

/// The table's sections (dnf 4.14's `Output.list_transaction`); any other
/// (module streams, groups, skipped packages) is refused as not understood.
fn action_of(header: &str) -> Option<Action> {
    Some(match header {
        "Installing"
        | "Installing dependencies"
        | "Installing weak dependencies"
        | "Installing group/module packages"
        | "Installing group packages" => Action::Install,
        "Upgrading" => Action::Upgrade,
        "Reinstalling" => Action::Reinstall,
        "Downgrading" => Action::Downgrade,
        "Removing" | "Removing dependent packages" | "Removing unused dependencies" => Action::Remove,
        _ => return None,
    })
}

/// One package of the transaction table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub action: Action,
    pub name: String,
    pub arch: String,
    /// As the inventory writes it (no `0:`).
    pub version: String,
    /// The repository id, `@System` or `@commandline`.
    pub repo: String,
}

impl Row {
    pub fn spec(&self) -> String {
        format!("{}-{}.{}", self.name, self.version, self.arch)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    pub rows: Vec<Row>,
    /// Packages obsoleted (`replacing NAME.ARCH EVR`): removed too.
    pub replaced: Vec<String>,
}

impl Transaction {
    pub fn removals(&self) -> Vec<String> {
        let removed = self.rows.iter().filter(|r| r.action == Action::Remove).map(|r| r.name.clone());
        removed.chain(self.replaced.iter().cloned()).collect()
    }
}

/// Where the table's sections start: after `====`, ` Package …`, `====`.
fn table_start(lines: &[&str]) -> Option<usize> {
    let rule = |line: &str| !line.is_empty() && line.bytes().all(|b| b == b'=');
    lines.windows(3).position(|w| rule(w[0]) && w[1].trim_start().starts_with("Package") && rule(w[2])).map(|at| at + 3)
}

/// The transaction table dnf prints before it asks (stdout of
/// `--assumeno`): `None` without one ("Nothing to do."), the offending
/// line when one is not understood. A name longer than its column ends its
/// line; the rest of the row follows on an indented line.
pub fn parse_transaction(text: &str) -> Result<Option<Transaction>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = table_start(&lines) else { return Ok(None) };
    let mut transaction = Transaction::default();
    let mut action = None;
    let mut pending: Vec<(Action, Vec<&str>)> = Vec::new();
    for &line in lines[start..].iter().take_while(|l| !l.starts_with("Transaction Summary")) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let header = line.trim_end().strip_suffix(':').ok_or_else(|| line.to_owned())?;
            action = Some(action_of(header).ok_or_else(|| line.to_owned())?);
        } else if tokens[0] == "replacing" {
            let replaced = tokens.get(1).ok_or_else(|| line.to_owned())?;
            let name = replaced.rsplit_once('.').map_or(*replaced, |(name, _arch)| name);
            transaction.replaced.push(name.to_owned());
        } else if line.starts_with("  ") {
            pending.last_mut().ok_or_else(|| line.to_owned())?.1.extend(tokens);
        } else {
            pending.push((action.ok_or_else(|| line.to_owned())?, tokens));
        }
    }
    for (action, tokens) in pending {
        let [name, arch, evr, repo, ..] = tokens[..] else { return Err(tokens.join(" ")) };
        let version = version_of(evr).ok_or_else(|| tokens.join(" "))?;
        transaction.rows.push(Row { action, name: name.into(), arch: arch.into(), version, repo: repo.into() });
    }
    Ok(Some(transaction))
}
