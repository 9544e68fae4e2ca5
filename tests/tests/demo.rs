//! `patchward demo`, the real binary as a user runs it: it brings up its
//! office on loopback (vendor, git policy repository, engine, real agents
//! in sandbox dpkg roots), commits an approval, follows the rollout, and
//! prints where to look. While it runs, the printed URL and tokens work
//! and the admin API agrees every device converged; when it exits (by
//! itself after `--for`, or at SIGINT mid-tour) no agent is left running
//! and its temporary folder is gone.
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

fn json(url: &str, token: &str) -> serde_json::Value {
    let (status, body) = get(url, Some(token));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_demo_rolls_a_commit_out_to_every_agent_then_exits_and_leaves_nothing_behind() {
    let mut demo = Demo::start(&["--agents", "3", "--production-after", "0s", "--for", "20s"]);
    let dir = files_dir(&demo.until("the first line", Duration::from_secs(60), |l| l.starts_with("patchward demo:")));
    assert!(dir.is_dir(), "{}", dir.display());
    demo.until("the enrollments", Duration::from_secs(120), |l| l.contains("every agent is in"));
    demo.until("the approval commit", Duration::from_secs(60), |l| {
        l.contains("commit ") && l.contains("Approve PW-DEMO-0001")
    });
    let done = demo.until("the end of the rollout", Duration::from_secs(240), |l| l.contains("rollout complete"));
    assert!(done.contains("all 3 devices run pw-hello 1.0"), "{done}");
    demo.until("the exit notice", Duration::from_secs(30), |l| l.starts_with("Exiting in"));

    // While it runs, what it printed works.
    let console = demo.field("console");
    let admin = demo.field("admin token");
    let user = demo.field("user token");
    assert!(console.starts_with("http://127.0.0.1:") && console.ends_with('/'), "{console}");
    assert!(admin.starts_with("pwa_"), "{admin}");
    assert!(user.starts_with("pwu_"), "{user}");
    assert_eq!(demo.field("files"), dir.display().to_string());
    assert_eq!(get(&format!("{console}healthz"), None), (200, "ok\n".to_owned()));
    // The console signs the admin in with the printed token, and the
    // user to their device's portal.
    let (landing, status, page) = console_sign_in(&console, &admin);
    assert_eq!((landing.as_str(), status), ("/console", 200), "{page}");
    let (landing, status, page) = console_sign_in(&console, &user);
    assert_eq!((landing.as_str(), status), ("/portal", 200), "{page}");
    assert!(page.contains("pilot-01"), "{page}");

    // The admin API agrees with the summary: every device has the patch
    // installed and is compliant; each reported its success.
    let compliance = json(&format!("{console}api/v1/compliance"), &admin);
    assert_eq!((compliance["devices"].as_u64(), compliance["compliant"].as_u64()), (Some(3), Some(3)), "{compliance}");
    let devices = json(&format!("{console}api/v1/devices"), &admin);
    let devices = devices["devices"].as_array().unwrap();
    let mut ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["pilot-01", "prod-01", "prod-02"]);
    for device in devices {
        let items = device["items"].as_array().unwrap();
        let item = items.iter().find(|i| i["patch"] == "PW-DEMO-0001").unwrap_or_else(|| panic!("{device}"));
        assert_eq!(item["status"], "installed", "{device}");
        let reports = device["reports"].as_array().unwrap();
        assert!(reports.iter().any(|r| r["patch"] == "PW-DEMO-0001" && r["status"] == "succeeded"), "{device}");
    }
    // Production waited for the pilot ring: the tour printed its gate.
    assert!(demo.seen.iter().any(|l| l.contains("prod-01") && l.contains("blocked")), "{}", demo.transcript());
    // The user token opens its one device's portal.
    let portal = json(&format!("{console}api/v1/user/device"), &user);
    assert_eq!(portal["device"], "pilot-01", "{portal}");
    assert!(!pids_mentioning(&dir.display().to_string()).is_empty(), "the agents run while the demo does");

    // It exits by itself, removes its folder, and leaves no agent behind.
    let status = demo.wait(Duration::from_secs(120));
    assert!(status.success(), "{status}\n{}", demo.transcript());
    assert!(demo.seen.iter().any(|l| l.ends_with(&format!("removed {}", dir.display()))), "{}", demo.transcript());
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(pids_mentioning(&dir.display().to_string()), Vec::<i32>::new(), "no agent outlives the demo");
}

#[test]
fn sigint_mid_tour_stops_the_agents_and_the_engine_and_removes_the_files() {
    let mut demo = Demo::start(&["--agents", "2"]);
    let dir = files_dir(&demo.until("the first line", Duration::from_secs(60), |l| l.starts_with("patchward demo:")));
    demo.until("the enrollments", Duration::from_secs(120), |l| l.contains("every agent is in"));
    assert_eq!(pids_mentioning(&dir.display().to_string()).len(), 2, "two agents run");
    demo.signal("INT");
    let status = demo.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", demo.transcript());
    assert!(demo.seen.iter().any(|l| l.contains("SIGINT: stopping")), "{}", demo.transcript());
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(pids_mentioning(&dir.display().to_string()), Vec::<i32>::new(), "no agent outlives the demo");
}
