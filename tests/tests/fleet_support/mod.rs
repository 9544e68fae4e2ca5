//! Driving the engine over HTTP as a fleet of agents would, and checking
//! afterwards that everything it acknowledged is there exactly once: the
//! crash loops (T13/T14, T44, T45) share it.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use patchward_tests::{binary, copy_tree, workspace_root};

/// A small deterministic generator (xorshift), so a failing run repeats.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// The shipped policies as a folder, their feed at a closed port without
/// retries (the bundled feed seeds the catalog), and a config file that
/// lifts the per-device rate limit (the driver is faster than any agent).
pub fn engine_files(dir: &Path) -> (PathBuf, PathBuf) {
    let policies = dir.join("policies");
    copy_tree(&workspace_root().join("policies"), &policies);
    let catalog = std::fs::read_to_string(policies.join("catalog.yaml")).unwrap();
    let catalog = catalog
        .replace("https://patches.example.com/feed.json", "http://127.0.0.1:1/feed.json")
        .replace("retries: 3", "retries: 0");
    std::fs::write(policies.join("catalog.yaml"), catalog).unwrap();
    let config = dir.join("serve.yaml");
    std::fs::write(&config, "limits:\n  deviceRequestsPerMinute: 1000000\n").unwrap();
    (policies, config)
}

/// A running `patchward serve`, its stderr drained by a thread.
pub struct Engine {
    pub child: Child,
    base: Option<String>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Engine {
    pub fn spawn(data: &Path, policies: &Path, config: &Path) -> Engine {
        Engine::spawn_with(data, policies, config, &[])
    }

    /// [`Engine::spawn`] with more flags (`--store URL`).
    pub fn spawn_with(data: &Path, policies: &Path, config: &Path, flags: &[&str]) -> Engine {
        let mut child = std::process::Command::new(binary("patchward-engine", "patchward"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data")
            .arg(data)
            .arg("--policies")
            .arg(policies)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("patchward serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Engine { child, base: None, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until the engine says where it listens and is ready.
    pub async fn ready(&mut self, http: &reqwest::Client) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "the engine did not become ready:\n{}", self.log());
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the engine exited with {status} (the store did not open?):\n{}", self.log());
            }
            if self.base.is_none() {
                self.base = self.log.lock().unwrap().iter().find_map(|line| {
                    let rest = line.split_once("API on http://")?.1;
                    Some(format!("http://{}", rest.split(',').next()?.trim()))
                });
            }
            if let Some(base) = &self.base {
                let ready = http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16());
                if ready.ok() == Some(200) {
                    return base.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

/// One event as an agent would report it; its body depends on its seq
/// only, so a batch sent again is the same batch.
pub fn event(seq: u64) -> serde_json::Value {
    let at = jiff::Timestamp::from_second(1_767_225_600 + seq as i64).unwrap();
    serde_json::json!({"seq": seq, "at": at.to_string(), "kind": "report", "patch": "KB5032190",
        "status": "succeeded"})
}

pub struct Device {
    pub id: String,
    pub credential: String,
    pub next_seq: u64,
    /// Every seq the engine acknowledged.
    pub acknowledged: BTreeSet<u64>,
    /// Seqs of batches the engine answered `recorded` = size: in the audit log.
    pub audited: BTreeSet<u64>,
    /// A batch sent whose answer never came: sent again until it is.
    pub unanswered: Option<Vec<u64>>,
}

/// What the engine acknowledged, across all its lives.
#[derive(Default)]
pub struct Ledger {
    pub token: String,
    pub devices: Vec<Device>,
    pub enrollments_unanswered: usize,
    pub batches_acknowledged: usize,
    /// Batches in flight at a kill, sent again after the restart.
    pub batches_resent: usize,
    pub kills_while_serving: usize,
    pub kills_while_starting: usize,
    /// Acknowledged events the audit log lacks (recorded by a request
    /// killed between the event and its audit entry, then sent again).
    pub unaudited: usize,
}

#[derive(Debug)]
pub enum Failure {
    /// No answer: the engine is gone (killed).
    Gone,
    /// 503: the engine could not commit the write (its store is down).
    Refused,
}

pub async fn post(
    http: &reqwest::Client,
    url: String,
    bearer: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, Failure> {
    let response = http
        .post(url.clone())
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|_| Failure::Gone)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|_| Failure::Gone)?;
    if status.as_u16() == 503 {
        return Err(Failure::Refused);
    }
    assert!(status.is_success(), "{url}: {status}: {}", String::from_utf8_lossy(&bytes));
    Ok(serde_json::from_slice(&bytes).expect("a JSON answer"))
}

pub async fn send_batch(
    http: &reqwest::Client,
    base: &str,
    device: &mut Device,
    seqs: Vec<u64>,
) -> Result<serde_json::Value, Failure> {
    let body = serde_json::json!({"events": seqs.iter().map(|s| event(*s)).collect::<Vec<_>>()});
    device.unanswered = Some(seqs.clone());
    let answer = post(http, format!("{base}/api/v1/device/events"), &device.credential, body).await?;
    device.unanswered = None;
    let recorded = answer["recorded"].as_u64().unwrap() as usize;
    let duplicates = answer["duplicates"].as_u64().unwrap() as usize;
    assert_eq!(recorded + duplicates, seqs.len(), "{}: {answer}", device.id);
    if recorded == seqs.len() {
        device.audited.extend(&seqs);
    }
    device.acknowledged.extend(&seqs);
    Ok(answer)
}

/// Acts as the fleet until the engine stops answering; each request goes
/// to one of `bases` (replicas behind a load balancer).
pub async fn drive(http: &reqwest::Client, bases: &[String], ledger: &mut Ledger, random: &mut Random) -> Failure {
    loop {
        let base = bases[random.below(bases.len() as u64) as usize].as_str();
        if ledger.devices.len() < 4 || random.below(12) == 0 {
            let host = format!("crash-{:04}", ledger.devices.len() + ledger.enrollments_unanswered);
            ledger.enrollments_unanswered += 1;
            let body = serde_json::json!({"facts": {"hostname": host}});
            let answer = match post(http, format!("{base}/api/v1/enroll"), &ledger.token, body).await {
                Ok(answer) => answer,
                Err(failure) => return failure,
            };
            ledger.enrollments_unanswered -= 1;
            ledger.devices.push(Device {
                id: answer["deviceId"].as_str().unwrap().to_owned(),
                credential: answer["credential"].as_str().unwrap().to_owned(),
                next_seq: 1,
                acknowledged: BTreeSet::new(),
                audited: BTreeSet::new(),
                unanswered: None,
            });
        } else {
            let index = random.below(ledger.devices.len() as u64) as usize;
            let size = 1 + random.below(8);
            let device = &mut ledger.devices[index];
            let seqs = device.unanswered.clone().unwrap_or_else(|| {
                let seqs: Vec<u64> = (device.next_seq..device.next_seq + size).collect();
                device.next_seq += size;
                seqs
            });
            if let Err(failure) = send_batch(http, base, device, seqs).await {
                return failure;
            }
            ledger.batches_acknowledged += 1;
        }
    }
}

/// Everything acknowledged before the kill is there, once.
pub async fn check(http: &reqwest::Client, base: &str, admin: &str, ledger: &mut Ledger, life: usize) {
    for device in &mut ledger.devices {
        let response = http
            .get(format!("{base}/api/v1/device/desired-state"))
            .bearer_auth(&device.credential)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "life {life}: the acknowledged enrollment of {} is lost",
            device.id
        );
        // The agent's outbox sends its unanswered batch again.
        if let Some(seqs) = device.unanswered.clone() {
            ledger.batches_resent += 1;
            assert!(send_batch(http, base, device, seqs).await.is_ok(), "the engine answers");
        }
        let all: Vec<u64> = device.acknowledged.iter().copied().collect();
        for chunk in all.chunks(1000) {
            let body = serde_json::json!({"events": chunk.iter().map(|s| event(*s)).collect::<Vec<_>>()});
            let answer = post(http, format!("{base}/api/v1/device/events"), &device.credential, body)
                .await
                .unwrap_or_else(|_| panic!("the engine answers"));
            assert_eq!(
                (answer["recorded"].as_u64(), answer["duplicates"].as_u64()),
                (Some(0), Some(chunk.len() as u64)),
                "life {life}: {} lost acknowledged events",
                device.id
            );
        }
    }

    // The audit log: no agent event twice; every batch recorded in full is in it.
    let mut seen: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let response =
            http.get(format!("{base}/api/v1/audit?after={after}&limit=10000")).bearer_auth(admin).send().await.unwrap();
        assert!(response.status().is_success(), "audit: {}", response.status());
        let page: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let entries = page["entries"].as_array().unwrap();
        let Some(last) = entries.last() else { break };
        after = last["seq"].as_u64().unwrap();
        // Each admin call is audited too: a short page is the end.
        let end = entries.len() < 10_000;
        for entry in entries {
            if !entry["action"].as_str().unwrap().starts_with("agent.") {
                continue;
            }
            let key = (entry["actor"].as_str().unwrap().to_owned(), entry["detail"]["seq"].as_u64().unwrap());
            *seen.entry(key).or_default() += 1;
        }
        if end {
            break;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "life {life}: agent events twice in the audit log: {twice:?}");
    for device in &ledger.devices {
        let actor = format!("device:{}", device.id);
        let missing: Vec<u64> =
            device.audited.iter().copied().filter(|seq| !seen.contains_key(&(actor.clone(), *seq))).collect();
        assert!(missing.is_empty(), "life {life}: {actor}'s recorded events {missing:?} are not in the audit log");
    }
    ledger.unaudited = ledger
        .devices
        .iter()
        .map(|d| d.acknowledged.iter().filter(|seq| !seen.contains_key(&(format!("device:{}", d.id), **seq))).count())
        .sum();
    // An event and its audit entry are one transaction: every acknowledged
    // event is audited, whatever the kill interrupted.
    assert_eq!(ledger.unaudited, 0, "life {life}: acknowledged events missing from the audit log");
}
