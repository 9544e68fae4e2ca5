//! Observations: each parser against real-format samples (odd ones too),
//! the samplers on fake /proc files and a fake clock, logind and systemd
//! through scripted commands, and each reader once against this machine
//! where it has the file or the service (skipped, saying so, where not).

use std::path::Path;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use patchward_agent::observe::{
    BootKind, Clock, CommandLine, CpuSampler, CpuTimes, FakeClock, ForegroundApps, InputIdle, InterfaceCounters,
    LoadMonitor, Logind, NetworkSampler, ObserveError, SampleHistory, ScriptedCommands, SystemCommands,
    boot_kind_query, idle_since_from_usec, invocation_id_query, parse_boot_id, parse_boot_kind, parse_boot_time,
    parse_invocation_id, parse_list_sessions, parse_proc_net_dev, parse_proc_stat_cpu, parse_show_session,
    read_boot_id, read_boot_kind, read_boot_time, read_invocation_id, show_session_query,
};

fn at(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

// --- CPU ------------------------------------------------------------------

const PROC_STAT: &str = "cpu  2191460 0 256621 1042810 27568 0 2845 13571 0 0
cpu0 1015617 0 117901 616965 8704 0 1068 6717 0 0
cpu1 1175842 0 138719 425845 18864 0 1777 6853 0 0
intr 152475301 0 9 0 0 0 0 0 0 0 0
ctxt 281516934
btime 1796105416
processes 1305233
procs_running 3
procs_blocked 0
";

#[test]
fn proc_stat_parses_in_its_old_and_new_shapes() {
    let times = parse_proc_stat_cpu(PROC_STAT).expect("parses");
    assert_eq!(times, CpuTimes { total: 2191460 + 256621 + 1042810 + 27568 + 2845 + 13571, idle: 1042810 + 27568 });
    // A 2.4 kernel's four columns; guest time is inside user already.
    assert_eq!(parse_proc_stat_cpu("cpu 10 20 30 40\n"), Ok(CpuTimes { total: 100, idle: 40 }));
    assert_eq!(parse_proc_stat_cpu("cpu  1 0 1 8 0 0 0 0 5 5\n"), Ok(CpuTimes { total: 10, idle: 8 }));
    assert!(parse_proc_stat_cpu("cpu0 1 2 3 4\n").is_err());
    assert!(parse_proc_stat_cpu("cpu 1 2 x 4\n").is_err());
    assert!(parse_proc_stat_cpu("cpu 1 2\n").is_err());
    assert_eq!(parse_boot_time(PROC_STAT), Ok(Timestamp::from_second(1796105416).expect("in range")));
    assert!(parse_boot_time("cpu 1 2 3 4\n").is_err());
}

#[test]
fn cpu_busy_percent_is_the_share_of_busy_ticks_between_samples() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stat = dir.path().join("stat");
    let mut sampler = CpuSampler::new(dir.path());
    // No file yet: an error naming it.
    let missing = sampler.sample().expect_err("no /proc/stat");
    assert!(missing.to_string().contains("stat"), "{missing}");

    write(&stat, "cpu  100 0 100 800 0 0 0 0 0 0\n");
    assert_eq!(sampler.sample().expect("reads"), None, "the first sample is the baseline");
    // +100 ticks, 25 of them busy (user 15, system 10), 75 idle+iowait.
    write(&stat, "cpu  115 0 110 870 5 0 0 0 0 0\n");
    assert_eq!(sampler.sample().expect("reads"), Some(25.0));
    // No tick passed: nothing to say.
    assert_eq!(sampler.sample().expect("reads"), None);
    // Counters backwards (CPUs went offline): a new baseline, then on.
    write(&stat, "cpu  50 0 50 400 0 0 0 0 0 0\n");
    assert_eq!(sampler.sample().expect("reads"), None);
    write(&stat, "cpu  140 0 50 410 0 0 0 0 0 0\n");
    assert_eq!(sampler.sample().expect("reads"), Some(90.0));
}

#[test]
fn reads_this_machines_cpu() {
    let proc = Path::new("/proc");
    assert!(proc.join("stat").exists(), "this test needs Linux's /proc/stat");
    let mut sampler = CpuSampler::new(proc);
    assert_eq!(sampler.sample().expect("reads /proc/stat"), None);
    // Work (not sleep) until the kernel has counted a tick.
    let started = Instant::now();
    let mut spin = 0u64;
    let percent = loop {
        for k in 0..100_000u64 {
            spin = spin.wrapping_mul(31).wrapping_add(k);
        }
        if let Some(percent) = sampler.sample().expect("reads /proc/stat") {
            break percent;
        }
        assert!(started.elapsed().as_secs() < 10, "no CPU tick counted in 10 s");
    };
    std::hint::black_box(spin);
    assert!((0.0..=100.0).contains(&percent), "{percent}");
}

// --- network --------------------------------------------------------------

const PROC_NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 255599627 1072947    0    0    0     0          0         0 255599627 1072947    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 175467172   10563    0    0    0     0          0         0   803734    9152    0    0    0     0       0          0
";

#[test]
fn proc_net_dev_parses_with_and_without_a_space_after_the_colon() {
    let interfaces = parse_proc_net_dev(PROC_NET_DEV).expect("parses");
    assert_eq!(
        interfaces,
        vec![
            InterfaceCounters { name: "lo".into(), rx_bytes: 255599627, tx_bytes: 255599627 },
            InterfaceCounters { name: "ifb0".into(), rx_bytes: 0, tx_bytes: 0 },
            InterfaceCounters { name: "eth0".into(), rx_bytes: 175467172, tx_bytes: 803734 },
        ]
    );
    // Kernels before 2.6.x: a big counter ran into the colon.
    let old = "Inter-|   Receive\n face |bytes\n  eth0:4294967295 10 0 0 0 0 0 0 12345 10 0 0 0 0 0 0\n";
    assert_eq!(parse_proc_net_dev(old).expect("parses")[0].rx_bytes, 4294967295);
    assert!(parse_proc_net_dev("  eth0: 1 2 3\n").is_err());
}

fn counters(list: &[(&str, u64, u64)]) -> Vec<InterfaceCounters> {
    list.iter().map(|(name, rx, tx)| InterfaceCounters { name: (*name).into(), rx_bytes: *rx, tx_bytes: *tx }).collect()
}

#[test]
fn network_rate_is_kilobits_per_second_over_non_loopback_interfaces() {
    let clock = FakeClock::new(at("2026-11-20T10:00:00Z"));
    let mut sampler = NetworkSampler::new(Path::new("/unused"));
    assert_eq!(sampler.observe(clock.now(), &counters(&[("lo", 0, 0), ("eth0", 1_000, 1_000)])), None);
    // 10 s later: eth0 moved 125 000 bytes in, 125 000 out = 2 Mbit in 10 s
    // = 200 kbit/s. The loopback's gigabyte does not count.
    let now = clock.advance(SignedDuration::from_secs(10));
    let rate = sampler.observe(now, &counters(&[("lo", 1 << 30, 1 << 30), ("eth0", 126_000, 126_000)]));
    assert_eq!(rate, Some(200.0));
    // eth0 reset (its counters restarted) and wlan0 appeared: eth0 counts
    // what it shows since the reset, wlan0 counts from the next sample.
    let now = clock.advance(SignedDuration::from_secs(1));
    let rate = sampler.observe(now, &counters(&[("eth0", 500, 0), ("wlan0", 9_999_999, 0)]));
    assert_eq!(rate, Some(4.0));
    let now = clock.advance(SignedDuration::from_secs(1));
    assert_eq!(sampler.observe(now, &counters(&[("eth0", 500, 0), ("wlan0", 10_000_124, 0)])), Some(1.0));
    // The clock set back: no rate, a new baseline.
    let now = clock.advance(SignedDuration::from_secs(-60));
    assert_eq!(sampler.observe(now, &counters(&[("eth0", 600, 0)])), None);
    let now = clock.advance(SignedDuration::from_secs(2));
    assert_eq!(sampler.observe(now, &counters(&[("eth0", 850, 0)])), Some(1.0));
}

#[test]
fn network_sampler_reads_a_fake_proc() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = FakeClock::new(at("2026-11-20T10:00:00Z"));
    let mut sampler = NetworkSampler::new(dir.path());
    assert!(matches!(sampler.sample(clock.now()), Err(ObserveError::Read { .. })));
    write(&dir.path().join("net/dev"), PROC_NET_DEV);
    assert_eq!(sampler.sample(clock.now()).expect("reads"), None);
    write(&dir.path().join("net/dev"), &PROC_NET_DEV.replace("175467172", "175717172"));
    assert_eq!(sampler.sample(clock.advance(SignedDuration::from_secs(2))).expect("reads"), Some(1000.0));
}

#[test]
fn reads_this_machines_network_counters() {
    let text = std::fs::read_to_string("/proc/net/dev").expect("this test needs Linux's /proc/net/dev");
    let interfaces = parse_proc_net_dev(&text).expect("the real file parses");
    // Every interface the kernel lists in sysfs is there.
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(interfaces.iter().any(|i| i.name == name), "{name} missing from {interfaces:?}");
        }
    }
    let clock = FakeClock::new(Timestamp::now());
    let mut sampler = NetworkSampler::new(Path::new("/proc"));
    assert_eq!(sampler.sample(clock.now()).expect("reads"), None);
    let rate = sampler.sample(clock.advance(SignedDuration::from_secs(1))).expect("reads").expect("a rate");
    assert!(rate >= 0.0, "{rate}");
}

// --- history --------------------------------------------------------------

#[test]
fn history_keeps_the_last_hour_and_a_bounded_count() {
    let clock = FakeClock::new(at("2026-11-20T10:00:00Z"));
    let mut history = SampleHistory::new(SignedDuration::from_hours(1), 1000);
    // Two hours of one sample a minute.
    for minute in 0..120 {
        history.push(clock.now(), f64::from(minute));
        clock.advance(SignedDuration::from_mins(1));
    }
    let samples = history.samples();
    assert_eq!(samples.len(), 61, "an hour back from the newest, both ends in");
    assert_eq!(samples.first(), Some(&(at("2026-11-20T10:59:00Z"), 59.0)));
    assert_eq!(samples.last(), Some(&(at("2026-11-20T11:59:00Z"), 119.0)));

    let mut bounded = SampleHistory::new(SignedDuration::from_hours(1), 3);
    for second in 0..10 {
        bounded.push(at("2026-11-20T10:00:00Z") + SignedDuration::from_secs(second), 1.0);
    }
    assert_eq!(bounded.len(), 3);
    assert_eq!(bounded.samples()[0].0, at("2026-11-20T10:00:07Z"));

    // The clock went back: what "the last hour" held is unknown.
    history.push(at("2026-11-20T09:00:00Z"), 5.0);
    assert_eq!(history.samples(), vec![(at("2026-11-20T09:00:00Z"), 5.0)]);
}

#[test]
fn history_tells_since_when_a_value_stayed_below() {
    let mut history = SampleHistory::new(SignedDuration::from_hours(1), 100);
    for (minute, value) in [(0, 50.0), (1, 5.0), (2, 20.0), (3, 4.0), (4, 3.0), (5, 9.0)] {
        history.push(at("2026-11-20T10:00:00Z") + SignedDuration::from_mins(minute), value);
    }
    assert_eq!(history.below_since(10.0), Some(at("2026-11-20T10:03:00Z")));
    assert_eq!(history.below_since(25.0), Some(at("2026-11-20T10:01:00Z")));
    assert_eq!(history.below_since(100.0), Some(at("2026-11-20T10:00:00Z")));
    assert_eq!(history.below_since(9.0), None, "the newest is not below");
    assert_eq!(SampleHistory::new(SignedDuration::from_hours(1), 10).below_since(10.0), None);
}

#[test]
fn the_load_monitor_samples_on_its_clock() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = FakeClock::new(at("2026-11-20T10:00:00Z"));
    write(&dir.path().join("stat"), "cpu  0 0 0 0 0 0 0 0 0 0\n");
    write(&dir.path().join("net/dev"), "Inter-|\n face |\n  eth0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    let mut monitor = LoadMonitor::new(&clock, dir.path(), SignedDuration::from_hours(1), 720);
    assert!(monitor.tick().is_empty());
    clock.advance(SignedDuration::from_secs(5));
    write(&dir.path().join("stat"), "cpu  10 0 0 90 0 0 0 0 0 0\n");
    write(&dir.path().join("net/dev"), "Inter-|\n face |\n  eth0: 6250 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    assert!(monitor.tick().is_empty());
    assert_eq!(monitor.cpu_percent.samples(), vec![(at("2026-11-20T10:00:05Z"), 10.0)]);
    assert_eq!(monitor.network_kbps.samples(), vec![(at("2026-11-20T10:00:05Z"), 10.0)]);
    // One source gone: reported, the other still recorded.
    std::fs::remove_file(dir.path().join("net/dev")).expect("remove");
    clock.advance(SignedDuration::from_secs(5));
    write(&dir.path().join("stat"), "cpu  10 0 0 190 0 0 0 0 0 0\n");
    let errors = monitor.tick();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("net/dev"), "{}", errors[0]);
    assert_eq!(monitor.cpu_percent.latest(), Some((at("2026-11-20T10:00:10Z"), 0.0)));
}

// --- logind ---------------------------------------------------------------

#[test]
fn loginctl_outputs_parse() {
    // systemd 252 (Debian 12), without and with the legend.
    let old = "      2 1000 alice seat0 tty2\n     c1  120 gdm   seat0 tty1\n";
    assert_eq!(parse_list_sessions(old), vec!["2", "c1"]);
    let with_legend = "SESSION  UID USER  SEAT  TTY\n      2 1000 alice seat0 tty2\n\n1 sessions listed.\n";
    assert_eq!(parse_list_sessions(with_legend), vec!["2"]);
    // systemd 256: more columns, same first one.
    let new = "3 1000 bob   -     1234 manager -     no   -\n4 1000 bob   seat0 1301 user    tty2  yes  2h 3min ago\n";
    assert_eq!(parse_list_sessions(new), vec!["3", "4"]);
    assert!(parse_list_sessions("No sessions.\n").is_empty());

    let show = "Id=2\nName=alice\nClass=user\nType=wayland\nActive=yes\nState=active\nRemote=no\n\
                IdleHint=yes\nIdleSinceHint=1763632800000000\nLockedHint=no\n";
    let session = parse_show_session(show);
    assert_eq!((session.id.as_str(), session.user.as_str(), session.kind.as_str()), ("2", "alice", "wayland"));
    assert!(session.active && session.idle_hint && !session.locked && !session.remote);
    assert_eq!(session.idle_since, Some(at("2025-11-20T10:00:00Z")));
    assert_eq!(idle_since_from_usec("0"), None);
    assert_eq!(idle_since_from_usec("garbage"), None);
}

fn show(id: &str, kind: &str, class: &str, active: bool, idle_since_usec: Option<i64>, locked: bool) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    format!(
        "Id={id}\nName=alice\nClass={class}\nType={kind}\nActive={}\nState={}\nRemote=no\nIdleHint={}\n\
         IdleSinceHint={}\nLockedHint={}\n",
        yes(active),
        if active { "active" } else { "online" },
        yes(idle_since_usec.is_some()),
        idle_since_usec.unwrap_or(0),
        yes(locked)
    )
}

fn logind(sessions: &[(&str, String)], proc: &Path) -> Logind<ScriptedCommands> {
    let list: String = sessions.iter().map(|(id, _)| format!("{id} 1000 alice seat0 tty2\n")).collect();
    let mut runner =
        ScriptedCommands::new().answer(CommandLine::new("loginctl", ["list-sessions", "--no-legend"]), &list);
    for (id, properties) in sessions {
        runner = runner.answer(show_session_query(id), properties);
    }
    Logind::new(runner, proc)
}

const T1: i64 = 1_763_632_800_000_000; // 2025-11-20T10:00:00Z
const T2: i64 = 1_763_636_400_000_000; // 2025-11-20T11:00:00Z

#[test]
fn input_idle_is_since_the_last_session_went_idle() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write(&dir.path().join("stat"), PROC_STAT);
    let proc = dir.path();
    // Two idle sessions: idle since the later. The user manager's session is ignored.
    let idle = logind(
        &[
            ("2", show("2", "wayland", "user", true, Some(T1), false)),
            ("5", show("5", "tty", "user", true, Some(T2), false)),
            ("6", show("6", "unspecified", "manager", true, None, false)),
        ],
        proc,
    );
    assert_eq!(idle.idle_since().expect("reads"), Some(at("2025-11-20T11:00:00Z")));
    // One active session: not idle.
    let busy = logind(
        &[
            ("2", show("2", "wayland", "user", true, Some(T1), false)),
            ("5", show("5", "tty", "user", true, None, false)),
        ],
        proc,
    );
    assert_eq!(busy.idle_since().expect("reads"), None);
    // Nobody logged in: idle since boot (btime).
    let nobody = logind(&[], proc);
    assert_eq!(nobody.idle_since().expect("reads"), Some(Timestamp::from_second(1796105416).expect("in range")));
    // Idle without a time: cannot tell how long, so an error, not a guess.
    let unknown = logind(&[("2", show("2", "x11", "user", true, Some(0), false))], proc);
    assert!(unknown.idle_since().is_err());
    // No logind: an error saying so.
    let missing = Logind::new(
        ScriptedCommands::new().missing(CommandLine::new("loginctl", ["list-sessions", "--no-legend"])),
        proc,
    );
    let error = missing.idle_since().expect_err("no loginctl");
    assert!(error.to_string().contains("loginctl"), "{error}");
}

#[test]
fn foreground_is_an_active_unlocked_graphical_session() {
    let proc = Path::new("/unused");
    let desk = logind(
        &[
            ("2", show("2", "wayland", "user", true, None, false)),
            ("3", show("3", "x11", "user", false, None, false)),
            ("4", show("4", "x11", "user", true, None, true)),
            ("5", show("5", "tty", "user", true, None, false)),
            ("c1", show("c1", "wayland", "greeter", true, None, false)),
        ],
        proc,
    );
    assert_eq!(desk.foreground_apps().expect("reads"), vec!["graphical session 2 (wayland, user alice)"]);
    let locked = logind(&[("4", show("4", "x11", "user", true, None, true))], proc);
    assert!(locked.foreground_apps().expect("reads").is_empty());
}

#[test]
fn reads_this_machines_logind() {
    let logind = Logind::new(SystemCommands, Path::new("/proc"));
    match logind.sessions() {
        Ok(sessions) => {
            eprintln!("logind sessions here: {sessions:?}");
            assert!(sessions.iter().all(|s| !s.id.is_empty()));
            logind.idle_since().expect("idle since, from a running logind");
        }
        Err(e) => {
            // No running logind here (a container): the failure must say
            // which command and why, which is what is checked instead.
            eprintln!("no running logind here, so its failure is checked: {e}");
            assert!(e.to_string().contains("loginctl"), "{e}");
        }
    }
}

// --- boot -----------------------------------------------------------------

#[test]
fn boot_ids_and_kinds_parse() {
    assert_eq!(
        parse_boot_id("8D2A1F3C-7B4E-4C1D-9E5F-0A1B2C3D4E5F\n"),
        Ok("8d2a1f3c-7b4e-4c1d-9e5f-0a1b2c3d4e5f".into())
    );
    assert!(parse_boot_id("").is_err());
    assert!(parse_boot_id("8d2a1f3c7b4e4c1d9e5f0a1b2c3d4e5f").is_err());

    let reached = |unit: &str, message: &str| format!("{{\"UNIT\":\"{unit}\",\"MESSAGE\":\"{message}\"}}\n");
    let reboot = reached("reboot.target", "Reached target reboot.target - System Reboot.");
    let poweroff = reached("poweroff.target", "Reached target System Power Off.");
    assert_eq!(parse_boot_kind(&reboot), BootKind::Warm);
    assert_eq!(
        parse_boot_kind(&reached("kexec.target", "Reached target kexec.target - Reboot via kexec.")),
        BootKind::Warm
    );
    assert_eq!(parse_boot_kind(&poweroff), BootKind::Cold);
    assert_eq!(parse_boot_kind(&reached("halt.target", "Reached target System Halt.")), BootKind::Cold);
    // A reboot requested, then a power-off: the last one decides.
    assert_eq!(parse_boot_kind(&format!("{reboot}{poweroff}")), BootKind::Cold);
    // Only "Reached target" counts; nothing reached is an unclean end.
    assert_eq!(
        parse_boot_kind(&reached("reboot.target", "reboot.target: Job reboot.target/start canceled.")),
        BootKind::Unclean
    );
    assert_eq!(parse_boot_kind(""), BootKind::Unclean);
    assert!(matches!(parse_boot_kind("-- No entries --\n"), BootKind::Unknown(_)));

    let no_journal = ScriptedCommands::new().fail(
        boot_kind_query(),
        1,
        "Specifying boot ID or boot offset has no effect, no persistent journal was found.",
    );
    let BootKind::Unknown(reason) = read_boot_kind(&no_journal) else { panic!("a volatile journal cannot tell") };
    assert!(reason.contains("no persistent journal"), "{reason}");
    let warm = ScriptedCommands::new().answer(boot_kind_query(), &reboot);
    assert_eq!(read_boot_kind(&warm), BootKind::Warm);
}

#[test]
fn reads_this_machines_boot() {
    let proc = Path::new("/proc");
    let text = std::fs::read_to_string(proc.join("sys/kernel/random/boot_id"))
        .expect("this test needs Linux's /proc/sys/kernel/random/boot_id");
    let id = read_boot_id(proc).expect("the real boot id parses");
    assert_eq!(id, text.trim());
    assert_eq!(read_boot_id(proc).expect("again"), id, "the same boot");
    let booted = read_boot_time(proc).expect("btime");
    assert!(booted < Timestamp::now(), "{booted}");

    let kind = read_boot_kind(&SystemCommands);
    eprintln!("this boot: {kind:?}");
    let boots = std::process::Command::new("journalctl").args(["--list-boots", "--quiet", "--no-pager"]).output();
    let previous_boot_recorded =
        boots.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() >= 2);
    if previous_boot_recorded {
        assert!(!matches!(kind, BootKind::Unknown(_)), "{kind:?}");
    } else {
        eprintln!("no previous boot in a journal here: the kind must be unknown");
        assert!(matches!(kind, BootKind::Unknown(_)), "{kind:?}");
    }
}

// --- systemd --------------------------------------------------------------

#[test]
fn invocation_ids_parse() {
    assert_eq!(
        parse_invocation_id("6C0D6F1B4A8E4C2BA1D3E5F7A9B0C1D2\n"),
        Ok(Some("6c0d6f1b4a8e4c2ba1d3e5f7a9b0c1d2".into()))
    );
    assert_eq!(parse_invocation_id("\n"), Ok(None), "a unit that is not running");
    assert!(parse_invocation_id("InvocationID=6c0d").is_err());
    assert_eq!(
        invocation_id_query("nginx.service"),
        CommandLine::new("systemctl", ["show", "-p", "InvocationID", "--value", "--", "nginx.service"])
    );
    let running =
        ScriptedCommands::new().answer(invocation_id_query("nginx.service"), "6c0d6f1b4a8e4c2ba1d3e5f7a9b0c1d2\n");
    assert_eq!(
        read_invocation_id(&running, "nginx.service").expect("reads"),
        Some("6c0d6f1b4a8e4c2ba1d3e5f7a9b0c1d2".into())
    );
    let no_systemd = ScriptedCommands::new().missing(invocation_id_query("nginx.service"));
    let error = read_invocation_id(&no_systemd, "nginx.service").expect_err("no systemctl");
    assert!(error.to_string().contains("systemctl"), "{error}");
}

#[test]
fn reads_this_machines_unit_invocation() {
    let systemd_running = Path::new("/run/systemd/system").exists();
    let result = read_invocation_id(&SystemCommands, "systemd-journald.service");
    if systemd_running {
        let id = result.expect("systemctl answers").expect("journald is running under systemd");
        assert_eq!(id.len(), 32);
    } else {
        eprintln!("systemd is not running as init here: the invocation id must be an error with its reason");
        let error = result.expect_err("no systemd manager to ask");
        assert!(error.to_string().contains("systemctl"), "{error}");
    }
}
