//! The device's facts (DESIGN "Interfaces": every fact optional), read for
//! real on Linux. Files come from under the agent's `--root` (so a sandbox
//! root works the same as `/`), kernel state from an injectable `/proc`.
//!
//! The values follow what the engine and the catalog match on: `os` is
//! `linux`, `platform` is `ID-VERSION_ID` from os-release as the catalog's
//! importers name them (`debian-12`, `ubuntu-22.04`, `rhel-9`), `arch` the
//! engine's names (`x86_64`, `aarch64`), `language` a BCP 47 tag (`en-US`),
//! `timezone` an IANA name. A fact that cannot be read is `None`, never an
//! error: the report lists each one with the reason, for the logs.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use patchward_api::Facts;

/// Where the facts are read from.
#[derive(Clone, Debug)]
pub struct FactSources {
    /// The agent's `--root`: `etc/os-release`, `etc/hostname`, … under it.
    pub root: PathBuf,
    /// The kernel's `/proc` (the default route, addresses, uname).
    pub proc: PathBuf,
    /// The agent's own `LANG`, the last resort for the language.
    pub lang: Option<String>,
    /// Whether the primary address may be asked of the kernel's routing
    /// table through a UDP socket when `/proc` does not tell it. Off for a
    /// sandbox root, whose facts must not come from the machine running it.
    pub route_probe: bool,
}

impl FactSources {
    /// The running system under `root` (normally `/`).
    pub fn system(root: impl Into<PathBuf>) -> FactSources {
        FactSources {
            root: root.into(),
            proc: PathBuf::from("/proc"),
            lang: std::env::var("LANG").ok(),
            route_probe: true,
        }
    }
}

/// The facts, and the ones that could not be read with why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactsReport {
    pub facts: Facts,
    pub unread: Vec<UnreadFact>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadFact {
    /// The fact's name in the fleet file: `platform`, `ip`, …
    pub fact: &'static str,
    pub reason: String,
}

impl fmt::Display for UnreadFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.fact, self.reason)
    }
}

/// Collects every fact. `labels` and `groups` come from the agent's config.
pub fn collect_facts(sources: &FactSources, labels: BTreeMap<String, String>, groups: Vec<String>) -> FactsReport {
    let mut unread = Vec::new();
    let mut keep = |fact: &'static str, value: Result<String, String>| match value {
        Ok(value) => Some(value),
        Err(reason) => {
            unread.push(UnreadFact { fact, reason });
            None
        }
    };
    let facts = Facts {
        os: Some(std::env::consts::OS.to_owned()),
        platform: keep("platform", read_platform(&sources.root)),
        arch: keep("arch", read_arch(&sources.proc)),
        language: keep("language", read_language(&sources.root, sources.lang.as_deref())),
        hostname: keep("hostname", read_hostname(&sources.root, &sources.proc)),
        labels: labels.into(),
        groups,
        timezone: keep("timezone", read_timezone(&sources.root)),
        ip: keep("ip", read_primary_ip(&sources.proc, sources.route_probe).map(|ip| ip.to_string())),
    };
    FactsReport { facts, unread }
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| io_reason(path, &e))
}

fn io_reason(path: &Path, error: &io::Error) -> String {
    format!("{}: {error}", path.display())
}

/// `root` joined with an absolute path as it would be seen from inside it.
pub fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

// --- platform -------------------------------------------------------------

/// The os-release file's variables (the format is a shell-compatible
/// `KEY=value` list; values may be double-quoted with `\` escapes or
/// single-quoted). Used for `/etc/default/locale` too, which is the same.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        vars.insert(key.to_owned(), unquote(value.trim()));
    }
    vars
}

fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_owned();
    }
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next @ ('"' | '\\' | '$' | '`')) => out.push(next),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        return out;
    }
    // Unquoted: up to a trailing comment.
    value.split(" #").next().unwrap_or(value).trim().to_owned()
}

/// Distributions whose catalog platforms name only the major release
/// (OSV's `AlmaLinux:9`, Red Hat's `enterprise_linux:9`), while their
/// os-release says `9.4`.
const MAJOR_ONLY: &[&str] = &["rhel", "centos", "almalinux", "rocky", "ol", "cloudlinux", "eurolinux", "navy"];

/// Debian's testing and unstable carry no VERSION_ID; the codename names
/// the release the catalog will call `debian-13`.
const DEBIAN_CODENAMES: &[(&str, &str)] =
    &[("buster", "10"), ("bullseye", "11"), ("bookworm", "12"), ("trixie", "13"), ("forky", "14"), ("duke", "15")];

/// `ID-VERSION_ID` as the catalog names platforms, from os-release's variables.
pub fn platform_from_os_release(vars: &BTreeMap<String, String>) -> Result<String, String> {
    let id = vars.get("ID").map(|id| id.trim().to_ascii_lowercase()).filter(|id| !id.is_empty());
    let Some(id) = id else { return Err("os-release has no ID".to_owned()) };
    let version_id = vars.get("VERSION_ID").map(|v| v.trim()).filter(|v| !v.is_empty());
    let codename = vars.get("VERSION_CODENAME").map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty());
    let release = match (version_id, codename) {
        (Some(version), _) if MAJOR_ONLY.contains(&id.as_str()) => {
            Some(version.split('.').next().unwrap_or(version).to_owned())
        }
        (Some(version), _) => Some(version.to_owned()),
        (None, Some(codename)) if id == "debian" => Some(
            DEBIAN_CODENAMES
                .iter()
                .find(|(name, _)| *name == codename)
                .map_or(codename.clone(), |(_, number)| (*number).to_owned()),
        ),
        (None, Some(codename)) => Some(codename),
        // A rolling release (Arch: ID=arch, BUILD_ID=rolling) is the id alone,
        // as the catalog's importers name a platform without a release.
        (None, None) => None,
    };
    Ok(match release {
        Some(release) => format!("{id}-{release}"),
        None => id,
    })
}

fn read_platform(root: &Path) -> Result<String, String> {
    // os-release(5): /etc/os-release, else /usr/lib/os-release.
    let mut reasons = Vec::new();
    for candidate in ["etc/os-release", "usr/lib/os-release"] {
        let path = root.join(candidate);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return platform_from_os_release(&parse_env_file(&text))
                    .map_err(|e| format!("{}: {e}", path.display()));
            }
            Err(e) => reasons.push(io_reason(&path, &e)),
        }
    }
    Err(reasons.join("; "))
}

// --- arch -----------------------------------------------------------------

/// The engine's name for a machine type (`uname -m`, Debian's and Windows'
/// names alike): `x86_64`, `aarch64`, `x86`, `arm`; others pass lowercased.
pub fn normalize_arch(machine: &str) -> Option<String> {
    let machine = machine.trim().to_ascii_lowercase();
    let name = match machine.as_str() {
        "" => return None,
        "x86_64" | "amd64" | "x64" => "x86_64",
        "aarch64" | "arm64" | "armv8l" => "aarch64",
        "i386" | "i486" | "i586" | "i686" | "x86" => "x86",
        "arm" | "armhf" | "armel" | "armv6l" | "armv7l" | "armv7" => "arm",
        "ppc64el" => "ppc64le",
        other => other,
    };
    Some(name.to_owned())
}

fn read_arch(proc: &Path) -> Result<String, String> {
    // `uname -m` as the kernel reports it (a 32-bit agent on a 64-bit
    // kernel still reports the machine); the build target otherwise.
    let path = proc.join("sys/kernel/arch");
    let machine = std::fs::read_to_string(&path).unwrap_or_else(|_| std::env::consts::ARCH.to_owned());
    normalize_arch(&machine).ok_or_else(|| format!("{}: empty machine type", path.display()))
}

// --- language -------------------------------------------------------------

/// A POSIX locale name as a BCP 47 tag: `en_US.UTF-8` → `en-US`,
/// `sr_RS@latin` → `sr-Latn-RS`, `fi` → `fi`. `C` and `POSIX` name no
/// language.
pub fn language_from_locale(locale: &str) -> Option<String> {
    let locale = locale.trim();
    let (locale, modifier) = match locale.split_once('@') {
        Some((locale, modifier)) => (locale, Some(modifier)),
        None => (locale, None),
    };
    let locale = locale.split('.').next().unwrap_or(locale);
    if matches!(locale, "" | "C" | "POSIX") {
        return None;
    }
    let (language, region) = match locale.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (locale, None),
    };
    if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut tag = language.to_ascii_lowercase();
    match modifier {
        Some("latin") => tag.push_str("-Latn"),
        Some("cyrillic") => tag.push_str("-Cyrl"),
        _ => {}
    }
    if let Some(region) = region.filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric())) {
        tag.push('-');
        tag.push_str(&region.to_ascii_uppercase());
    }
    Some(tag)
}

/// The language from a locale file's variables, as glibc picks the
/// language of messages: `LC_ALL`, then `LC_MESSAGES`, then `LANG`.
pub fn language_from_locale_vars(vars: &BTreeMap<String, String>) -> Option<String> {
    ["LC_ALL", "LC_MESSAGES", "LANG"].iter().filter_map(|key| vars.get(*key)).find_map(|v| language_from_locale(v))
}

fn read_language(root: &Path, lang: Option<&str>) -> Result<String, String> {
    let mut reasons = Vec::new();
    // Debian's /etc/default/locale, systemd's (and Red Hat's) /etc/locale.conf.
    for candidate in ["etc/default/locale", "etc/locale.conf"] {
        let path = root.join(candidate);
        match std::fs::read_to_string(&path) {
            Ok(text) => match language_from_locale_vars(&parse_env_file(&text)) {
                Some(language) => return Ok(language),
                None => reasons.push(format!("{}: names no language (C or POSIX)", path.display())),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => reasons.push(io_reason(&path, &e)),
        }
    }
    match lang {
        Some(value) => match language_from_locale(value) {
            Some(language) => return Ok(language),
            None => reasons.push(format!("LANG={value} names no language")),
        },
        None => reasons.push("no locale file and no LANG".to_owned()),
    }
    Err(reasons.join("; "))
}

// --- hostname -------------------------------------------------------------

fn first_meaningful_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))
}

fn read_hostname(root: &Path, proc: &Path) -> Result<String, String> {
    let mut reasons = Vec::new();
    for path in [root.join("etc/hostname"), proc.join("sys/kernel/hostname")] {
        match std::fs::read_to_string(&path) {
            Ok(text) => match first_meaningful_line(&text) {
                Some(name) => return Ok(name.to_owned()),
                None => reasons.push(format!("{}: empty", path.display())),
            },
            Err(e) => reasons.push(io_reason(&path, &e)),
        }
    }
    Err(reasons.join("; "))
}

// --- time zone ------------------------------------------------------------

/// The IANA name in a `/etc/localtime` link target:
/// `/usr/share/zoneinfo/Europe/Helsinki` (or relative, or under `posix/`
/// or `right/`) → `Europe/Helsinki`.
pub fn zone_from_localtime_target(target: &Path) -> Option<String> {
    let text = target.to_str()?;
    let (_, zone) = text.rsplit_once("zoneinfo/")?;
    let zone = zone.strip_prefix("posix/").or_else(|| zone.strip_prefix("right/")).unwrap_or(zone);
    known_zone(zone)
}

/// The name if jiff's time zone database knows it (so the engine can use it).
fn known_zone(name: &str) -> Option<String> {
    let name = name.trim();
    (!name.is_empty() && jiff::tz::db().get(name).is_ok()).then(|| name.to_owned())
}

fn read_timezone(root: &Path) -> Result<String, String> {
    let mut reasons = Vec::new();
    let timezone = root.join("etc/timezone");
    match std::fs::read_to_string(&timezone) {
        Ok(text) => match first_meaningful_line(&text).and_then(known_zone) {
            Some(zone) => return Ok(zone),
            None => reasons.push(format!("{}: no known IANA zone in {:?}", timezone.display(), text.trim())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => reasons.push(io_reason(&timezone, &e)),
    }
    let localtime = root.join("etc/localtime");
    match std::fs::read_link(&localtime) {
        Ok(target) => match zone_from_localtime_target(&target) {
            Some(zone) => return Ok(zone),
            None => reasons.push(format!("{} -> {}: not a known zone", localtime.display(), target.display())),
        },
        // A copied zone file (EINVAL) carries no name.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            reasons.push(format!("{}: a copy of a zone file, not a link, so it names no zone", localtime.display()))
        }
        Err(e) => reasons.push(io_reason(&localtime, &e)),
    }
    Err(reasons.join("; "))
}

// --- primary address ------------------------------------------------------

/// One line of `/proc/net/route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub interface: String,
    pub destination: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub flags: u32,
    pub metric: u32,
}

impl Route {
    const UP: u32 = 0x1;

    pub fn is_default(&self) -> bool {
        self.destination.is_unspecified() && self.mask.is_unspecified() && self.flags & Route::UP != 0
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & u32::from(self.mask) == u32::from(self.destination) & u32::from(self.mask)
    }
}

/// The kernel writes the addresses as the hex of the in-memory (network
/// order) u32, so on every host the bytes read back in little-endian order.
fn route_address(hex: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(hex, 16).ok().map(|n| Ipv4Addr::from(n.to_le_bytes()))
}

/// `/proc/net/route`: a header line, then tab-separated columns
/// Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT.
pub fn parse_proc_route(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            if columns.len() < 8 {
                return None;
            }
            Some(Route {
                interface: columns[0].to_owned(),
                destination: route_address(columns[1])?,
                gateway: route_address(columns[2])?,
                flags: u32::from_str_radix(columns[3], 16).ok()?,
                metric: columns[6].parse().ok()?,
                mask: route_address(columns[7])?,
            })
        })
        .collect()
}

/// The device's own IPv4 addresses in `/proc/net/fib_trie`: each leaf
/// (`|-- 192.0.2.2`) followed by a `/32 host LOCAL` line.
pub fn parse_fib_trie_local_addresses(text: &str) -> Vec<Ipv4Addr> {
    let mut addresses = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(address) = line.strip_prefix("|-- ") {
            leaf = address.trim().parse().ok();
        } else if line.starts_with("+--") || line.ends_with(':') {
            leaf = None;
        } else if line.starts_with("/32 host LOCAL")
            && let Some(address) = leaf
            && !addresses.contains(&address)
        {
            addresses.push(address);
        }
    }
    addresses
}

/// The primary address: the one the default route leaves from. It is the
/// local address inside a subnet of the default route's interface,
/// preferring the subnet that holds the gateway.
pub fn primary_address(routes: &[Route], local_addresses: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let default = routes.iter().filter(|r| r.is_default()).min_by_key(|r| r.metric)?;
    let mut subnets: Vec<&Route> = routes
        .iter()
        .filter(|r| r.interface == default.interface && !r.mask.is_unspecified() && r.flags & Route::UP != 0)
        .collect();
    subnets.sort_by_key(|r| !r.contains(default.gateway));
    subnets.iter().find_map(|subnet| {
        local_addresses.iter().copied().find(|a| !a.is_loopback() && subnet.contains(*a) && *a != subnet.destination)
    })
}

fn read_primary_ip(proc: &Path, route_probe: bool) -> Result<IpAddr, String> {
    let mut reasons = Vec::new();
    let route_path = proc.join("net/route");
    let trie_path = proc.join("net/fib_trie");
    match (read_text(&route_path), read_text(&trie_path)) {
        (Ok(route), Ok(trie)) => {
            match primary_address(&parse_proc_route(&route), &parse_fib_trie_local_addresses(&trie)) {
                Some(address) => return Ok(IpAddr::V4(address)),
                None => reasons.push(format!(
                    "{} and {}: no IPv4 default route with a local address",
                    route_path.display(),
                    trie_path.display()
                )),
            }
        }
        (route, trie) => reasons.extend([route.err(), trie.err()].into_iter().flatten()),
    }
    if route_probe {
        match routed_source_address() {
            Ok(address) => return Ok(address),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(reasons.join("; "))
}

/// Asks the kernel which source address it would use towards a public
/// address, by `connect` on a UDP socket: that only looks up the route and
/// sends nothing. Covers IPv6-only hosts, which `/proc/net/route` omits.
fn routed_source_address() -> Result<IpAddr, String> {
    let probes: [(SocketAddr, SocketAddr); 2] = [
        ((Ipv4Addr::UNSPECIFIED, 0).into(), (Ipv4Addr::new(192, 88, 99, 1), 53).into()),
        (
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            (std::net::Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888), 53).into(),
        ),
    ];
    let mut reasons = Vec::new();
    for (bind, target) in probes {
        let attempt = UdpSocket::bind(bind)
            .and_then(|socket| socket.connect(target).and_then(|()| socket.local_addr()))
            .map(|local| local.ip());
        match attempt {
            Ok(ip) if !ip.is_unspecified() && !ip.is_loopback() => return Ok(ip),
            Ok(ip) => reasons.push(format!("route to {target} leaves from {ip}")),
            Err(e) => reasons.push(format!("no route to {target}: {e}")),
        }
    }
    Err(reasons.join("; "))
}
