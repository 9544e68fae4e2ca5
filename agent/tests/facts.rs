//! Facts: the parsers against real-format samples, collection from a
//! sandbox root with a fake /proc, and collection from this machine
//! checked against its own tools.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use patchward_agent::facts::{
    FactSources, collect_facts, language_from_locale, language_from_locale_vars, normalize_arch, parse_env_file,
    parse_fib_trie_local_addresses, parse_proc_route, platform_from_os_release, primary_address,
    zone_from_localtime_target,
};
use patchward_api::Facts;

fn platform(os_release: &str) -> Result<String, String> {
    platform_from_os_release(&parse_env_file(os_release))
}

#[test]
fn platform_is_id_and_version_id_as_the_catalog_names_them() {
    let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                  VERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
    assert_eq!(platform(debian), Ok("debian-12".into()));
    let ubuntu = "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy\n";
    assert_eq!(platform(ubuntu), Ok("ubuntu-22.04".into()));
    // Red Hat and its rebuilds: the catalog (OSV's AlmaLinux:9, Red Hat's
    // enterprise_linux:9) names the major release only.
    assert_eq!(platform("ID=\"rhel\"\nVERSION_ID=\"9.4\"\n"), Ok("rhel-9".into()));
    assert_eq!(platform("ID=\"almalinux\"\nVERSION_ID=\"9.4\"\n"), Ok("almalinux-9".into()));
    assert_eq!(platform("ID=\"rocky\"\nVERSION_ID=\"8.10\"\n"), Ok("rocky-8".into()));
    assert_eq!(platform("ID=fedora\nVERSION_ID=40\n"), Ok("fedora-40".into()));
    // Debian testing / unstable: no VERSION_ID, the codename names the release.
    let trixie =
        "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=trixie\nID=debian\n";
    assert_eq!(platform(trixie), Ok("debian-13".into()));
    assert_eq!(platform("ID=debian\nVERSION_CODENAME=sid\n"), Ok("debian-sid".into()));
    // A rolling release: the id alone, as the importers name it.
    assert_eq!(platform("NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n"), Ok("arch".into()));
    // Single quotes, escapes, comments, an uppercase ID, a blank VERSION_ID.
    assert_eq!(platform("# comment\nID='Debian'\nVERSION_ID=''\nVERSION_CODENAME=bookworm\n"), Ok("debian-12".into()));
    assert_eq!(platform("ID=\"opensuse-leap\"\nVERSION_ID=\"15.6\"\n"), Ok("opensuse-leap-15.6".into()));
    assert!(platform("NAME=nothing\n").is_err());
}

#[test]
fn env_file_values_unquote_like_a_shell() {
    let vars = parse_env_file(
        "A=\"say \\\"hi\\\" \\$HOME\"\nB='no $expansion \\here'\nexport C=plain # trailing\n  D = spaced\nnot a line\n",
    );
    assert_eq!(vars["A"], "say \"hi\" $HOME");
    assert_eq!(vars["B"], "no $expansion \\here");
    assert_eq!(vars["C"], "plain");
    assert_eq!(vars["D"], "spaced");
    assert_eq!(vars.len(), 4);
}

#[test]
fn languages_are_bcp47_tags() {
    assert_eq!(language_from_locale("en_US.UTF-8").as_deref(), Some("en-US"));
    assert_eq!(language_from_locale("fi_FI@euro").as_deref(), Some("fi-FI"));
    assert_eq!(language_from_locale("de_DE.ISO-8859-15@euro").as_deref(), Some("de-DE"));
    assert_eq!(language_from_locale("sr_RS.UTF-8@latin").as_deref(), Some("sr-Latn-RS"));
    assert_eq!(language_from_locale("fi").as_deref(), Some("fi"));
    assert_eq!(language_from_locale("C.UTF-8"), None);
    assert_eq!(language_from_locale("POSIX"), None);
    assert_eq!(language_from_locale(""), None);
    // /etc/default/locale: messages' language wins over LANG, C is skipped.
    let vars = parse_env_file("LANG=\"C.UTF-8\"\nLC_MESSAGES=fi_FI.UTF-8\nLC_TIME=en_GB.UTF-8\n");
    assert_eq!(language_from_locale_vars(&vars).as_deref(), Some("fi-FI"));
    let vars = parse_env_file("LC_ALL=C\nLANG=en_US.UTF-8\n");
    assert_eq!(language_from_locale_vars(&vars).as_deref(), Some("en-US"));
}

#[test]
fn machine_types_map_to_the_engines_names() {
    for (machine, expected) in [
        ("x86_64\n", "x86_64"),
        ("amd64", "x86_64"),
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
        ("i686", "x86"),
        ("armv7l", "arm"),
        ("ppc64le", "ppc64le"),
        ("riscv64", "riscv64"),
    ] {
        assert_eq!(normalize_arch(machine).as_deref(), Some(expected), "{machine}");
    }
    assert_eq!(normalize_arch(" "), None);
}

#[test]
fn zones_come_from_the_localtime_link() {
    for (target, expected) in [
        ("/usr/share/zoneinfo/Europe/Helsinki", Some("Europe/Helsinki")),
        ("../usr/share/zoneinfo/America/Argentina/Buenos_Aires", Some("America/Argentina/Buenos_Aires")),
        ("/usr/share/zoneinfo/posix/Asia/Tokyo", Some("Asia/Tokyo")),
        ("/usr/share/zoneinfo/Etc/UTC", Some("Etc/UTC")),
        ("/usr/share/zoneinfo/Not/AZone", None),
        ("/etc/alternatives/localtime", None),
    ] {
        assert_eq!(zone_from_localtime_target(Path::new(target)).as_deref(), expected, "{target}");
    }
}

/// This machine's own /proc/net/route and fib_trie, as read while writing it.
const ROUTE_ONE_INTERFACE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

const FIB_TRIE_ONE_INTERFACE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
";

/// A laptop: docker's bridge, wired and wireless defaults (wired preferred
/// by metric), a VPN-ish /32 on another interface.
const ROUTE_LAPTOP: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
enp3s0\t00000000\t0100140A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
enp3s0\t0000140A\t00000000\t0001\t0\t0\t100\t0000FFFF\t0\t0\t0\n\
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n";

#[test]
fn the_primary_address_is_where_the_default_route_leaves() {
    let routes = parse_proc_route(ROUTE_ONE_INTERFACE);
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].gateway, Ipv4Addr::new(192, 0, 2, 1));
    assert!(routes[0].is_default());
    let locals = parse_fib_trie_local_addresses(FIB_TRIE_ONE_INTERFACE);
    assert_eq!(locals, vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!(primary_address(&routes, &locals), Some(Ipv4Addr::new(192, 0, 2, 2)));

    // Several interfaces: the default route of lowest metric decides.
    let locals = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(172, 17, 0, 1),
        Ipv4Addr::new(192, 168, 1, 23),
        Ipv4Addr::new(10, 20, 1, 42),
    ];
    assert_eq!(primary_address(&parse_proc_route(ROUTE_LAPTOP), &locals), Some(Ipv4Addr::new(10, 20, 1, 42)));
    // No default route: no primary address.
    let no_default: Vec<_> = parse_proc_route(ROUTE_LAPTOP).into_iter().filter(|r| !r.is_default()).collect();
    assert_eq!(primary_address(&no_default, &locals), None);
}

fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().expect("a parent")).expect("create the sandbox directory");
    std::fs::write(&full, text).expect("write the sandbox file");
}

fn sandbox(root: &Path, proc: &Path) -> FactSources {
    FactSources { root: root.to_owned(), proc: proc.to_owned(), lang: None, route_probe: false }
}

#[test]
fn collects_every_fact_from_a_sandbox_root() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (root, proc) = (dir.path().join("root"), dir.path().join("proc"));
    write(&root, "etc/os-release", "ID=ubuntu\nVERSION_ID=\"24.04\"\n");
    write(&root, "etc/default/locale", "#  File generated by update-locale\nLANG=\"fi_FI.UTF-8\"\n");
    write(&root, "etc/hostname", "# set by the installer\nws-0042\n");
    std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Helsinki", root.join("etc/localtime")).expect("symlink");
    write(&proc, "sys/kernel/arch", "aarch64\n");
    write(&proc, "sys/kernel/hostname", "not-this-one\n");
    write(&proc, "net/route", ROUTE_ONE_INTERFACE);
    write(&proc, "net/fib_trie", FIB_TRIE_ONE_INTERFACE);

    let labels = BTreeMap::from([("ring".to_owned(), "pilot".to_owned())]);
    let report = collect_facts(&sandbox(&root, &proc), labels.clone(), vec!["finance".into()]);
    assert_eq!(report.unread, vec![]);
    assert_eq!(
        report.facts,
        Facts {
            os: Some("linux".into()),
            platform: Some("ubuntu-24.04".into()),
            arch: Some("aarch64".into()),
            language: Some("fi-FI".into()),
            hostname: Some("ws-0042".into()),
            labels: labels.into(),
            groups: vec!["finance".into()],
            timezone: Some("Europe/Helsinki".into()),
            ip: Some("192.0.2.2".into()),
        }
    );

    // /etc/timezone, when present, is Debian's own record and comes first.
    write(&root, "etc/timezone", "Europe/Stockholm\n");
    let report = collect_facts(&sandbox(&root, &proc), BTreeMap::new(), vec![]);
    assert_eq!(report.facts.timezone.as_deref(), Some("Europe/Stockholm"));
}

#[test]
fn unreadable_facts_are_none_and_say_why() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (root, proc) = (dir.path().join("root"), dir.path().join("proc"));
    write(&root, "etc/default/locale", "LANG=C.UTF-8\n");
    // A copied zone file names no zone.
    write(&root, "etc/localtime", "TZif2...");
    let report = collect_facts(&sandbox(&root, &proc), BTreeMap::new(), vec![]);
    let facts = &report.facts;
    assert_eq!(facts.os.as_deref(), Some("linux"));
    assert_eq!(
        (&facts.platform, &facts.language, &facts.hostname, &facts.timezone, &facts.ip),
        (&None, &None, &None, &None, &None)
    );
    // The arch falls back to the build target when /proc does not say.
    assert_eq!(facts.arch, normalize_arch(std::env::consts::ARCH));
    let reason = |fact: &str| {
        report
            .unread
            .iter()
            .find(|u| u.fact == fact)
            .map(|u| u.to_string())
            .unwrap_or_else(|| panic!("no reason for {fact}"))
    };
    assert!(reason("platform").contains("etc/os-release"), "{}", reason("platform"));
    assert!(reason("language").contains("names no language"), "{}", reason("language"));
    assert!(reason("hostname").contains("sys/kernel/hostname"), "{}", reason("hostname"));
    assert!(reason("timezone").contains("a copy of a zone file"), "{}", reason("timezone"));
    assert!(reason("ip").contains("net/route"), "{}", reason("ip"));
    assert_eq!(report.unread.len(), 5, "{:?}", report.unread);

    // LANG is the last resort for the language.
    let mut sources = sandbox(&root, &proc);
    sources.lang = Some("en_US.UTF-8".into());
    assert_eq!(collect_facts(&sources, BTreeMap::new(), vec![]).facts.language.as_deref(), Some("en-US"));
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// This machine, checked against what its own files and tools say.
#[test]
fn collects_this_machines_facts() {
    let report = collect_facts(&FactSources::system("/"), BTreeMap::new(), vec![]);
    eprintln!("facts of this machine: {:?}; unread: {:?}", report.facts, report.unread);
    let facts = report.facts;
    assert_eq!(facts.os.as_deref(), Some("linux"));

    let text = std::fs::read_to_string("/etc/os-release").expect("this test needs a Linux with /etc/os-release");
    let id = parse_env_file(&text).get("ID").cloned().expect("os-release has an ID");
    let platform = facts.platform.expect("a platform from os-release");
    assert!(platform.starts_with(&id.to_lowercase()), "{platform} is not {id}-…");
    let machine = run("uname", &["-m"]).expect("uname runs");
    assert_eq!(facts.arch, normalize_arch(&machine));

    let kernel_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("the kernel's hostname");
    let etc_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let hostname = facts.hostname.expect("a hostname");
    assert!(hostname == etc_hostname.trim() || hostname == kernel_hostname.trim(), "{hostname}");

    // The primary address is on the default route's interface, as `ip` says.
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default = parse_proc_route(&route).into_iter().filter(|r| r.is_default()).min_by_key(|r| r.metric);
    let addresses = run("ip", &["-o", "-4", "addr", "show"]);
    match (default, addresses) {
        (_, None) => panic!("this test needs iproute2's `ip`, the oracle of the primary address"),
        (None, _) => assert_eq!(facts.ip, None, "no default route, so no primary address"),
        (Some(default), Some(addresses)) => {
            let ip = facts.ip.expect("an address on a host with a default route");
            let on_interface = addresses
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some(default.interface.as_str()))
                .any(|l| l.contains(&format!("inet {ip}/")));
            assert!(on_interface, "{ip} is not on {}: {addresses}", default.interface);
        }
    }

    // The zone, when the machine names one, is a zone jiff knows.
    if let Some(zone) = facts.timezone {
        assert!(jiff::tz::TimeZone::get(&zone).is_ok(), "{zone}");
    } else {
        eprintln!("this machine names no time zone");
    }
}
