//! `patchward demo`, the real binary as a user runs it: it brings up its
//! office on loopback (a vendor with a Debian-style OSV advisory and a
//! signed apt repository, a git policy repository, the engine, real agents
//! in sandbox dpkg roots each with its own apt), prints the console's URL
//! and a token at once, commits an approval, follows the rollout through
//! apt, reverts the approval and follows every device back, and prints
//! where to look. The console signs in with the early token before any
//! agent runs. dpkg's and apt's own records in each sandbox show the path:
//! apt upgraded 0.9 to 1.0 after the approval and downgraded it back after
//! the revert, from the verified repository, and nothing was removed.
//! While it runs, the printed URL and tokens work and the admin API agrees
//! every device went back; when it exits (by itself after `--for`, or at
//! SIGINT mid-tour) no agent is left running and its temporary folder is
//! gone.
//!
//! Every wait is a bounded wait for output or an exit, never time passing.

mod agent_support;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_support::pids_mentioning;
use patchward_tests::binary;

/// The demo as a child process, its stdout read line by line.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        // The demo finds the agent beside itself.
        binary("patchward-agent", "patchward-agent");
        let mut child = Command::new(binary("patchward-engine", "patchward"))
            .arg("demo")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Demo { child, lines, seen: Vec::new(), stderr }
    }

    /// What it printed so far, for failure messages.
    fn transcript(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.seen.join("\n"), self.stderr.lock().unwrap())
    }

    /// Reads lines until one satisfies `wanted`; returns it.
    fn until(&mut self, what: &str, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {limit:?}\n{}", self.transcript()),
                Err(RecvTimeoutError::Disconnected) => panic!("the demo ended before {what}\n{}", self.transcript()),
            }
        }
    }

    /// The value of a `  NAME  VALUE` line of "Where to look".
    fn field(&self, name: &str) -> String {
        let prefix = format!("  {name} ");
        let line = self.seen.iter().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {name} line"));
        line[prefix.len()..].split_whitespace().next().unwrap().to_owned()
    }

    /// Waits for the process to end by itself.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("the demo did not exit within {limit:?}\n{}", self.transcript());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Demo {
    /// A failed test still lets the demo clean up: SIGTERM, then SIGKILL.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder the first line names.
fn files_dir(first: &str) -> PathBuf {
    let rest = first.strip_prefix("patchward demo: files in ").unwrap_or_else(|| panic!("{first}"));
    let (dir, _) = rest.split_once(" (").unwrap();
    PathBuf::from(dir)
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::builder().no_proxy().build().unwrap().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// Signs in to the console at `base` with `token` (the sign-in form, as a
/// browser posts it); returns where it sent the browser and that page.
fn console_sign_in(base: &str, token: &str) -> (String, u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let signed_in = client
            .post(format!("{base}signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert!(signed_in.status().is_redirection(), "{}", signed_in.status());
        let location = signed_in.headers()["location"].to_str().unwrap().to_owned();
        let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let page = client.get(format!("{base}{}", location.trim_start_matches('/'))).header("cookie", cookie);
        let page = page.send().await.unwrap();
        (location, page.status().as_u16(), page.text().await.unwrap())
    })
}

/// A console page read with an admin session made from `token`.
fn console_page(base: &str, token: &str, path: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let signed_in = client
            .post(format!("{base}signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let page = client.get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap();
        (page.status().as_u16(), page.text().await.unwrap())
    })
}

fn json(url: &str, token: &str) -> serde_json::Value {
    let (status, body) = get(url, Some(token));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The console URL and admin token of the tour's early line
/// (`console URL : sign in with the admin token TOKEN …`).
fn early_console(line: &str) -> (String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "console").unwrap_or_else(|| panic!("{line}"));
    let token = words.iter().find(|w| w.starts_with("pwa_")).unwrap_or_else(|| panic!("{line}"));
    (words[at + 1].to_owned(), token.to_string())
}

/// What dpkg and apt recorded in one device's sandbox.
struct Records {
    /// dpkg's database: pw-hello's version.
    installed: String,
    /// dpkg's log: `OLD NEW` of each `upgrade pw-hello:all` (a downgrade
    /// too is logged as an upgrade).
    upgrades: Vec<String>,
    /// dpkg's log: every remove or purge.
    removals: Vec<String>,
    /// apt's history log: each transaction's command line (the agent's own
    /// dpkg root options, the exact version) and what it did.
    apt_history: Vec<String>,
    /// The InRelease files apt fetched and verified.
    in_releases: usize,
}

/// apt's history log reduced to its command lines, and each transaction as
/// `Upgrade (0.9, 1.0)` (the log names `pw-hello:ARCH`: apt counts an `all`
/// package as native).
fn apt_history(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with("Commandline: ") {
            lines.push(line.to_owned());
        } else if let Some((what, rest)) = line.split_once(": pw-hello:") {
            lines.push(format!("{what} {}", rest.split_once(' ').map_or("", |(_, versions)| versions)));
        }
    }
    lines
}

fn records(device: &std::path::Path) -> Records {
    let root = device.join("root");
    let output = Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .args(["--show", "--showformat=${Version}", "pw-hello"])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(root.join("var/log/dpkg.log")).unwrap();
    let fields = |line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let lists = std::fs::read_dir(device.join("apt/var/lib/apt/lists")).unwrap();
    Records {
        installed: String::from_utf8_lossy(&output.stdout).into_owned(),
        upgrades: log
            .lines()
            .map(fields)
            .filter(|f| f.len() >= 6 && f[2] == "upgrade" && f[3] == "pw-hello:all")
            .map(|f| format!("{} {}", f[4], f[5]))
            .collect(),
        removals: log
            .lines()
            .map(fields)
            .filter(|f| f.len() >= 3 && (f[2] == "remove" || f[2] == "purge"))
            .map(|f| f.join(" "))
            .collect(),
        apt_history: apt_history(&std::fs::read_to_string(device.join("apt/var/log/apt/history.log")).unwrap()),
        in_releases: lists
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with("_InRelease"))
            .count(),
    }
}

const DEVICES: [&str; 3] = ["pilot-01", "prod-01", "prod-02"];

#[test]
fn the_demo_rolls_a_commit_out_through_apt_and_its_revert_back_then_exits_and_leaves_nothing_behind() {
    let started = Instant::now();
    let mut demo = Demo::start(&["--agents", "3", "--production-after", "0s", "--review-for", "5s", "--for", "20s"]);
    let dir = files_dir(&demo.until("the first line", Duration::from_secs(60), |l| l.starts_with("patchward demo:")));
    assert!(dir.is_dir(), "{}", dir.display());
    let (early_console_url, early_token) = follow_the_tour(&mut demo);

    // While it runs, what it printed works, and the early line said the same.
    let console = demo.field("console");
    let admin = demo.field("admin token");
    let user = demo.field("user token");
    assert_eq!((console.as_str(), admin.as_str()), (early_console_url.as_str(), early_token.as_str()));
    assert!(console.starts_with("http://127.0.0.1:") && console.ends_with('/'), "{console}");
    assert!(admin.starts_with("pwa_"), "{admin}");
    assert!(user.starts_with("pwu_"), "{user}");
    assert_eq!(demo.field("files"), dir.display().to_string());
    assert!(demo.field("retraction").ends_with("/console/devices/pilot-01:"), "{}", demo.transcript());
    assert_eq!(get(&format!("{console}healthz"), None), (200, "ok\n".to_owned()));
    let (landing, status, page) = console_sign_in(&console, &user);
    assert_eq!((landing.as_str(), status), ("/portal", 200), "{page}");
    assert!(page.contains("pilot-01"), "{page}");
    let portal = json(&format!("{console}api/v1/user/device"), &user);
    assert_eq!(portal["device"], "pilot-01", "{portal}");
    // The console's device view and audit log show the retraction.
    let (status, page) = console_page(&console, &admin, "console/devices/pilot-01");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("DSA-DEMO-0001 succeeded (uninstall)"), "{page}");
    let (status, page) = console_page(&console, &admin, "console/audit?actor=pilot-01");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("agent.report"), "{page}");

    check_admin_api(&console, &admin, &dir);
    for id in DEVICES {
        check_sandbox(&dir, id);
    }
    // Production waited for the pilot ring: the tour printed its gate.
    assert!(demo.seen.iter().any(|l| l.contains("prod-01") && l.contains("blocked")), "{}", demo.transcript());
    assert!(!pids_mentioning(&dir.display().to_string()).is_empty(), "the agents run while the demo does");

    // It exits by itself, removes its folder, and leaves no agent behind.
    let status = demo.wait(Duration::from_secs(120));
    assert!(status.success(), "{status}\n{}", demo.transcript());
    assert!(demo.seen.iter().any(|l| l.ends_with(&format!("removed {}", dir.display()))), "{}", demo.transcript());
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(pids_mentioning(&dir.display().to_string()), Vec::<i32>::new(), "no agent outlives the demo");
    eprintln!("the demo ran {:.0}s (20s of it --for)", started.elapsed().as_secs_f64());
}

/// Reads the tour from the import to the exit notice, checking its lines;
/// returns the console URL and admin token it printed first.
fn follow_the_tour(demo: &mut Demo) -> (String, String) {
    let imported = demo.until("the import", Duration::from_secs(60), |l| l.contains("imported from the OSV feed"));
    assert!(imported.contains("DSA-DEMO-0001, unrated, in coverage"), "{imported}");
    // The console and a token come as soon as the engine serves, and work
    // before any agent runs.
    let early = demo.until("the console line", Duration::from_secs(10), |l| l.contains("] console http"));
    let (console, token) = early_console(&early);
    assert!(!demo.seen.iter().any(|l| l.contains("enrolled")), "{}", demo.transcript());
    let (landing, status, page) = console_sign_in(&console, &token);
    assert_eq!((landing.as_str(), status), ("/console", 200), "{page}");

    let waiting = demo.until("the enrollments", Duration::from_secs(120), |l| l.contains("every agent is in"));
    assert!(waiting.contains("DSA-DEMO-0001 is missing on 3 of them"), "{waiting}");
    assert!(waiting.contains("is unrated (Debian's advisories carry none) and review-unrated matches it"), "{waiting}");
    // It waits in the review queue, with the YAML that approves it.
    let review = demo.until("the review line", Duration::from_secs(10), |l| l.contains("] review queue http"));
    assert!(review.contains("--review-for"), "{review}");
    let (status, page) = console_page(&console, &token, "console/review");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("DSA-DEMO-0001") && page.contains("kind: Approval"), "{page}");
    demo.until("the approval commit", Duration::from_secs(60), |l| {
        l.contains("commit ") && l.contains("Approve DSA-DEMO-0001")
    });
    let done = demo.until("the end of the rollout", Duration::from_secs(240), |l| l.contains("rollout complete"));
    assert!(done.contains("all 3 devices run pw-hello 1.0, installed by apt"), "{done}");
    let mirror = demo.until("the mirror line", Duration::from_secs(10), |l| l.contains("from the office mirror"));
    assert!(mirror.contains("] 3 of 3 agents downloaded pw-hello_1.0_all.deb from the office mirror"), "{mirror}");

    // The revert, and every device back on 0.9.
    demo.until("the revert commit", Duration::from_secs(60), |l| l.contains(": Revert \"Approve DSA-DEMO-0001"));
    for _ in DEVICES {
        demo.until("a device going back", Duration::from_secs(240), |l| {
            l.contains("back on pw-hello 0.9: the admin API")
        });
    }
    let back =
        demo.until("the end of the retraction", Duration::from_secs(30), |l| l.contains("all 3 devices are back"));
    assert!(back.contains("nothing was removed"), "{back}");
    demo.until("the exit notice", Duration::from_secs(30), |l| l.starts_with("Exiting in"));
    (console, token)
}

/// The admin API agrees: every device's last report is its uninstall, its
/// inventory has 0.9 again, nothing is left to do; the audit log keeps both
/// reports, each naming the file apt installed by its sha256.
fn check_admin_api(console: &str, admin: &str, dir: &std::path::Path) {
    let compliance = json(&format!("{console}api/v1/compliance"), admin);
    // Retracted everywhere: the policy plans nothing for any device now,
    // which is not "fully patched" (they are counted apart).
    let counts = ["devices", "compliant", "withoutItems"].map(|k| compliance[k].as_u64());
    assert_eq!(counts, [Some(3), Some(0), Some(3)], "{compliance}");
    let devices = json(&format!("{console}api/v1/devices"), admin);
    let devices = devices["devices"].as_array().unwrap();
    let mut ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, DEVICES);
    for device in devices {
        let reports = device["reports"].as_array().unwrap();
        let last = reports.iter().find(|r| r["patch"] == "DSA-DEMO-0001").unwrap_or_else(|| panic!("{device}"));
        assert_eq!((&last["status"], &last["action"]), (&"succeeded".into(), &"uninstall".into()), "{device}");
        let packages = device["inventory"]["packages"].as_array().unwrap();
        let hello = packages.iter().find(|p| p["name"] == "pw-hello").unwrap_or_else(|| panic!("{device}"));
        assert_eq!(hello["version"], "0.9", "{device}");
        let items = device["items"].as_array().unwrap();
        assert!(items.iter().all(|i| i["patch"] != "DSA-DEMO-0001" || i["status"] == "removed"), "{device}");
    }
    let audit = json(&format!("{console}api/v1/audit"), admin);
    let sha256 = |version: &str| {
        let deb = std::fs::read(dir.join(format!("packages/pw-hello_{version}_all.deb"))).unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&deb))
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    for id in DEVICES {
        let reports: Vec<(String, String, String)> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == format!("device:{id}").as_str() && e["action"] == "agent.report")
            .map(|e| {
                let package = &e["detail"]["detail"]["packages"][0];
                (text(&e["detail"]["action"]), text(&package["version"]), text(&package["sha256"]))
            })
            .collect();
        let expected = [("install", "1.0"), ("uninstall", "0.9")]
            .map(|(action, version)| (action.to_owned(), version.to_owned(), sha256(version)));
        assert_eq!(reports, expected, "{id}");
    }
}

/// dpkg's and apt's own records in device `id`'s sandbox: apt verified the
/// repository, upgraded 0.9 to 1.0 with the agent's root options, then
/// downgraded back; nothing was removed.
fn check_sandbox(dir: &std::path::Path, id: &str) {
    let records = records(&dir.join("agents").join(id));
    assert_eq!(records.installed, "0.9", "{id}");
    assert_eq!(records.upgrades, ["0.9 1.0", "1.0 0.9"], "{id}");
    assert_eq!(records.removals, Vec::<String>::new(), "{id}");
    let history = &records.apt_history;
    assert_eq!(history.len(), 4, "{id}: {history:#?}");
    let root = format!("-o DPkg::Options::=--root={}", dir.join("agents").join(id).join("root").display());
    assert!(history[0].contains(&root) && history[0].ends_with(" pw-hello:all=1.0"), "{id}: {history:#?}");
    assert_eq!(history[1], "Upgrade (0.9, 1.0)", "{id}");
    assert!(history[2].contains("--allow-downgrades") && history[2].ends_with(" pw-hello:all=0.9"), "{id}");
    assert_eq!(history[3], "Downgrade (1.0, 0.9)", "{id}");
    assert_eq!(records.in_releases, 1, "{id}: apt fetched the signed InRelease");
}

#[test]
fn sigint_mid_tour_stops_the_agents_and_the_engine_and_removes_the_files() {
    let mut demo = Demo::start(&["--agents", "2"]);
    let dir = files_dir(&demo.until("the first line", Duration::from_secs(60), |l| l.starts_with("patchward demo:")));
    demo.until("the enrollments", Duration::from_secs(120), |l| l.contains("every agent is in"));
    // Counted by their config files: apt and dpkg, which the agents run,
    // name the sandboxes too.
    let agents: usize = ["pilot-01", "prod-01"]
        .iter()
        .map(|id| pids_mentioning(&dir.join("agents").join(id).join("agent.yaml").display().to_string()).len())
        .sum();
    assert_eq!(agents, 2, "two agents run");
    demo.signal("INT");
    let status = demo.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", demo.transcript());
    assert!(demo.seen.iter().any(|l| l.contains("SIGINT: stopping")), "{}", demo.transcript());
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(pids_mentioning(&dir.display().to_string()), Vec::<i32>::new(), "no agent outlives the demo");
}
