//! The console in a real browser: Debian's headless Chromium, driven over
//! WebDriver, against a real engine (`patchward serve`'s own start, on
//! 127.0.0.1, fake clock) with enrolled devices. It signs in as an admin,
//! walks every admin view comparing its figures with the admin API's
//! JSON, checks CSRF and an expired session, then signs in as a user who
//! sees only their device, snoozes an item (the API then shows it), and is
//! refused another device's page. Screenshots of the main views go to
//! `target/screenshots/`.

mod browser_support;

use std::sync::Arc;

use browser_support::{Browser, Driver};
use patchward::clock::{Clock, FakeClock};
use patchward::daemon::config::ServeConfig;
use patchward_tests::{copy_tree, until, workspace_root};
use serde_json::{Value, json};

const T0: &str = "2026-11-24T12:00:00Z";

struct Fleet {
    base: String,
    admin: String,
    user: String,
    clock: Arc<FakeClock>,
    running: patchward::daemon::serve::Running,
    http: reqwest::Client,
}

impl Fleet {
    async fn api(&self, path: &str, token: &str) -> Value {
        let reply = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let reply = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap()
    }
}

/// A real engine on the shipped policy (one patch put under a prompting
/// policy, its catalog source pointed at a closed loopback port) and the
/// bundled feed, with three enrolled devices and a user token for one.
async fn fleet(dir: &std::path::Path) -> Fleet {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policies = dir.join("policies");
    copy_tree(&workspace_root().join("policies"), &policies);
    let catalog = std::fs::read_to_string(policies.join("catalog.yaml")).unwrap();
    std::fs::write(
        policies.join("catalog.yaml"),
        catalog
            .replace("https://patches.example.com/feed.json", "http://127.0.0.1:9/feed.json")
            .replace("retries: 3", "retries: 0"),
    )
    .unwrap();
    std::fs::write(
        policies.join("approvals/browser-test.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {name: prompt-for-two}\n\
         spec: {patches: [KB5032300], scopes: [all], policy: workstation-prompt}\n",
    )
    .unwrap();
    let clock = Arc::new(FakeClock::new(T0.parse().unwrap()));
    let config = ServeConfig {
        data: dir.join("engine"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: policies.display().to_string(),
        bundled_feed: true,
        ..ServeConfig::default()
    };
    let engine_clock: Arc<dyn Clock> = clock.clone();
    let running = patchward::daemon::serve::start(config, engine_clock).await.unwrap();
    let base = format!("http://{}", running.api);
    let admin = std::fs::read_to_string(&running.admin_token_file).unwrap().trim().to_owned();
    let http = reqwest::Client::new();
    let mut fleet = Fleet { base, admin, user: String::new(), clock, running, http };
    until("a policy in force", || async {
        let ready = fleet.http.get(format!("{}/readyz", fleet.base)).send().await;
        ready.is_ok_and(|r| r.status().is_success())
    })
    .await;
    until("the bundled feed imported", || async {
        fleet.api("/api/v1/status", &fleet.admin).await["bundledFeed"] == true
    })
    .await;
    let enrollment = fleet.post("/api/v1/tokens", &fleet.admin, json!({"kind": "enrollment", "uses": 3})).await;
    let enrollment = enrollment["token"].as_str().unwrap().to_owned();
    for (host, ip, ring) in [
        ("ws-0042", "10.20.1.42", "pilot"),
        ("ws-0077", "10.20.1.77", "production"),
        ("ws-0100", "10.20.1.100", "production"),
    ] {
        // The user's device is Finnish: the feed's language pack applies to it.
        let language = if host == "ws-0042" { "fi-FI" } else { "en-US" };
        let facts = json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64", "language": language,
            "hostname": host, "labels": {"role": "workstation", "ring": ring}, "ip": ip, "timezone": "Europe/Helsinki"});
        let enrolled = fleet.post("/api/v1/enroll", &enrollment, json!({"facts": facts})).await;
        let credential = enrolled["credential"].as_str().unwrap();
        let inventory = json!({"facts": facts, "inventory": {"patches": ["KB5031455"], "packages": []}});
        let reply = fleet
            .http
            .put(format!("{}/api/v1/device/inventory", fleet.base))
            .bearer_auth(credential)
            .header("content-type", "application/json")
            .body(inventory.to_string())
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success());
    }
    let devices = fleet.api("/api/v1/devices", &fleet.admin).await;
    let items: usize =
        devices["devices"].as_array().unwrap().iter().map(|d| d["items"].as_array().unwrap().len()).sum();
    assert!(items > 0, "the devices have items to show: {devices}");
    let user = fleet.post("/api/v1/tokens", &fleet.admin, json!({"kind": "user", "device": "ws-0042"})).await;
    fleet.user = user["token"].as_str().unwrap().to_owned();
    fleet
}

async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.go(&format!("{base}/signin")).await;
    browser.find("#token").await.type_text(token).await;
    browser.find("form.signin button[type=submit]").await.click().await;
}

/// A number shown in the element `css` selects.
async fn figure(browser: &Browser, css: &str) -> String {
    browser.text(css).await.trim().trim_end_matches('%').to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_shows_the_apis_figures_and_keeps_users_to_their_device() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path()).await;
    let shots = workspace_root().join("target/screenshots");
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let base = fleet.base.clone();

    // A wrong token says so.
    sign_in(&browser, &base, "pwa_not-a-token").await;
    browser.wait_for_text(".flash.error", "not an admin or user token").await;

    // The admin signs in and lands on compliance; its figures are the API's.
    sign_in(&browser, &base, &fleet.admin).await;
    browser.wait_for_url(&format!("{base}/console")).await;
    browser.wait_for_text("h1", "Compliance").await;
    let compliance = fleet.api("/api/v1/compliance", &fleet.admin).await;
    assert_eq!(figure(&browser, "#devices").await, compliance["devices"].to_string());
    assert_eq!(figure(&browser, "#pending").await, compliance["pending"].to_string());
    assert_eq!(figure(&browser, "#non-compliant").await, compliance["nonCompliant"].to_string());
    assert_eq!(
        figure(&browser, "#compliant-percent").await,
        format!("{:.1}", compliance["compliantPercent"].as_f64().unwrap())
    );
    for (severity, counts) in compliance["bySeverity"].as_object().unwrap() {
        let cells = browser.find_all(&format!("table[data-group=severity] tr[data-name='{severity}'] td")).await;
        assert_eq!(cells[2].text().await, counts["due"].to_string(), "{severity} due");
        assert_eq!(cells[1].text().await, counts["installed"].to_string(), "{severity} installed");
    }
    browser.screenshot(&shots, "compliance").await;
    // Its export works from the console, with the session alone.
    let export = browser.find("a[href='/console?format=csv']").await;
    assert_eq!(export.text().await, "Export CSV");
    let fetched = browser
        .run(
            "const done = arguments[arguments.length - 1];
             fetch('/console?format=csv').then(r => r.text().then(t =>
                done([r.status, r.headers.get('content-type'), t.split('\\n')[0]])));",
        )
        .await;
    assert_eq!(fetched[0], 200, "{fetched}");
    assert!(fetched[1].as_str().unwrap().starts_with("text/csv"), "{fetched}");
    assert_eq!(fetched[2], "group,name,installed,due,scheduled,blocked,removed,overdue", "{fetched}");

    // Devices: every enrolled device, with the compliance the API gives it.
    browser.go(&format!("{base}/console/devices")).await;
    let devices = fleet.api("/api/v1/devices", &fleet.admin).await;
    assert_eq!(browser.find_all("#devices tbody tr").await.len(), devices["total"].as_u64().unwrap() as usize);
    for device in devices["devices"].as_array().unwrap() {
        let id = device["id"].as_str().unwrap();
        let cells = browser.find_all(&format!("#devices tr[data-device='{id}'] td")).await;
        // The Location by name, its address in a column of its own.
        assert_eq!(cells[2].text().await, device["location"].as_str().unwrap_or("—"), "{id} location");
        assert_eq!(cells[3].text().await, device["facts"]["ip"].as_str().unwrap_or("—"), "{id} address");
        assert_eq!(cells[4].text().await, device["compliance"].as_str().unwrap(), "{id}");
        let pending = device["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] != "installed" && i["status"] != "removed")
            .count();
        assert_eq!(cells[5].text().await, pending.to_string(), "{id} pending");
    }
    browser.screenshot(&shots, "devices").await;
    // A filter narrows the list the way the API's filter does.
    browser.go(&format!("{base}/console/devices?severity=critical")).await;
    let critical = fleet.api("/api/v1/devices?severity=critical", &fleet.admin).await;
    let with_critical =
        critical["devices"].as_array().unwrap().iter().filter(|d| !d["items"].as_array().unwrap().is_empty()).count();
    assert_eq!(browser.find_all("#devices tbody tr").await.len(), with_critical);

    // One device: its items, each with status and policy.
    browser.go(&format!("{base}/console/devices/ws-0077")).await;
    let device = fleet.api("/api/v1/devices/ws-0077", &fleet.admin).await;
    for item in device["items"].as_array().unwrap() {
        let patch = item["patch"].as_str().unwrap();
        let cells = browser.find_all(&format!("table.items tr[data-patch='{patch}'] td")).await;
        assert!(cells[4].text().await.starts_with(item["status"].as_str().unwrap()), "{patch}");
        assert_eq!(cells[7].text().await, item["policy"].as_str().unwrap(), "{patch}");
    }
    // Its packages, listed.
    let packages = device["inventory"]["packages"].as_array().unwrap();
    assert_eq!(browser.find_all("#packages tbody tr").await.len(), packages.len().min(500));
    browser.screenshot(&shots, "device").await;

    // The review queue shows the YAML to commit; status and audit render.
    browser.go(&format!("{base}/console/review")).await;
    let queue: usize = figure(&browser, "#review-count").await.parse().unwrap();
    assert_eq!(browser.find_all("#review-queue tbody tr").await.len(), queue);
    if queue > 0 {
        browser.find("#review-queue details summary").await.click().await;
        assert!(browser.text("#review-queue figure.yaml pre").await.contains("kind: Approval"));
    }
    let review = fleet.api("/api/v1/review", &fleet.admin).await;
    assert_eq!(queue, review["reviewQueue"].as_array().unwrap().len());
    assert_eq!(figure(&browser, "#held-count").await, review["held"].as_array().unwrap().len().to_string());
    browser.screenshot(&shots, "review").await;

    // Rollouts: each rule's patch, stage by stage, with the API's counts.
    browser.go(&format!("{base}/console/rollouts")).await;
    let rollouts = fleet.api("/api/v1/rollouts", &fleet.admin).await;
    let rollouts = rollouts["rollouts"].as_array().unwrap();
    assert_eq!(browser.find_all("section.rollout").await.len(), rollouts.len());
    for rollout in rollouts {
        let (rule, patch) = (rollout["rule"].as_str().unwrap(), rollout["patch"].as_str().unwrap());
        for stage in rollout["stages"].as_array().unwrap() {
            let css =
                format!("section[data-rule='{rule}'][data-patch='{patch}'] tr[data-stage='{}'] td", stage["stage"]);
            let cells = browser.find_all(&css).await;
            for (column, field) in [(5, "done"), (6, "due"), (7, "scheduled"), (8, "blocked")] {
                assert_eq!(cells[column].text().await, stage[field].to_string(), "{rule} {patch} {field}");
            }
        }
    }
    browser.screenshot(&shots, "rollouts").await;

    // The software library: each assignment's devices by status.
    browser.go(&format!("{base}/console/software")).await;
    let software = fleet.api("/api/v1/software", &fleet.admin).await;
    for assignment in software["assignments"].as_array().unwrap() {
        let name = assignment["name"].as_str().unwrap();
        let cells = browser.find_all(&format!("#assignments tr[data-assignment='{name}'] td")).await;
        for (column, field) in [(7, "installed"), (8, "due"), (9, "removed")] {
            assert_eq!(cells[column].text().await, assignment["devices"][field].to_string(), "{name} {field}");
        }
    }
    browser.screenshot(&shots, "software").await;

    // The catalog, and "show matching patches" for a rule.
    browser.go(&format!("{base}/console/catalog")).await;
    let catalog = fleet.api("/api/v1/catalog", &fleet.admin).await;
    assert_eq!(browser.find_all("#catalog tbody tr").await.len(), catalog["total"].as_u64().unwrap() as usize);
    browser.screenshot(&shots, "catalog").await;
    let rule = rollouts.first().map_or("low-hold".to_owned(), |r| r["rule"].as_str().unwrap().to_owned());
    browser.go(&format!("{base}/console/catalog?rule={rule}")).await;
    let summary = browser.text("#rule-summary").await;
    assert!(summary.contains(&format!("Rule {rule} says")) && summary.contains("It decides"), "{summary}");
    browser.screenshot(&shots, "catalog-rule").await;
    let matching = fleet.api(&format!("/api/v1/catalog?rule={rule}"), &fleet.admin).await;
    let shown: Vec<String> = {
        let mut ids = Vec::new();
        for row in browser.find_all("#catalog tbody tr td:first-child").await {
            ids.push(row.text().await);
        }
        ids
    };
    let expected: Vec<String> =
        matching["patches"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(shown, expected, "the patches rule {rule} matches");

    // What was installed in a date range.
    browser.go(&format!("{base}/console/installed?from=2026-11-01&to=2026-12-01")).await;
    let installed = fleet.api("/api/v1/installed?from=2026-11-01&to=2026-12-01", &fleet.admin).await;
    assert_eq!(figure(&browser, "#installed-count").await, installed["total"].to_string());
    browser.go(&format!("{base}/console/status")).await;
    let status = fleet.api("/api/v1/status", &fleet.admin).await;
    assert_eq!(browser.find_all("#conditions tbody tr").await.len(), status["conditions"].as_array().unwrap().len());
    browser.screenshot(&shots, "status").await;
    // Sync now, through the form with its CSRF token: audited.
    browser.find("form[action='/console/sync'] button").await.click().await;
    browser.wait_for_text(".flash.ok", "Sync requested").await;
    browser.go(&format!("{base}/console/audit?action=sync.")).await;
    assert!(browser.text("#audit").await.contains("sync.requested"));
    // The log shows changes by default: the API reads of this test are
    // recorded apart; each detail reads as fields.
    browser.go(&format!("{base}/console/audit")).await;
    let log = browser.text("#audit").await;
    assert!(!log.contains("api.read") && log.contains("console.signin"), "{log}");
    assert!(!browser.find_all("#audit dl.fields dt").await.is_empty());
    let from: u64 = browser.text("p.pager span.from").await.parse().unwrap();
    let to: u64 = browser.text("p.pager span.to").await.parse().unwrap();
    assert!(from <= to, "the header reads oldest to newest: #{from} to #{to}");
    browser.screenshot(&shots, "audit").await;
    browser.go(&format!("{base}/console/audit?kind=reads")).await;
    assert!(browser.text("#audit").await.contains("api.read"));
    browser.screenshot(&shots, "audit-reads").await;

    // A state-changing request without the session's CSRF token is refused.
    let forged = browser
        .run(
            "const done = arguments[arguments.length - 1];
             fetch('/console/sync', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},
                body: 'csrf=forged'}).then(r => done(r.status));",
        )
        .await;
    assert_eq!(forged, 403);

    // Eight hours on, the session has expired.
    fleet.clock.advance(jiff::SignedDuration::from_hours(8));
    browser.go(&format!("{base}/console/devices")).await;
    browser.wait_for_url(&format!("{base}/signin?expired=1")).await;
    browser.wait_for_text(".flash.error", "Your session expired").await;

    // The user: only their device, a snooze the API then shows, and no
    // other device's page.
    browser.delete_cookies().await;
    sign_in(&browser, &base, &fleet.user).await;
    browser.wait_for_url(&format!("{base}/portal")).await;
    browser.wait_for_text("h1", "Device ws-0042").await;
    let page = browser.text("main").await;
    assert!(page.contains("ws-0042") && !page.contains("ws-0077") && !page.contains("ws-0100"), "{page}");
    let before = fleet.api("/api/v1/user/device", &fleet.user).await;
    let item = before["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["snoozesLeft"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("a snoozable item: {before}"))
        .clone();
    let patch = item["patch"].as_str().unwrap();
    assert_eq!(
        browser.text(&format!("#pending tr[data-patch='{patch}'] td.snoozes-left")).await,
        item["snoozesLeft"].to_string()
    );
    browser.screenshot(&shots, "portal").await;
    browser
        .find(&format!("#pending tr[data-patch='{patch}'] form[action='/portal/snooze'] button"))
        .await
        .click()
        .await;
    browser.wait_for_text(".flash.ok", "snoozed until").await;
    let after = fleet.api("/api/v1/user/device", &fleet.user).await;
    let snoozed = after["pending"].as_array().unwrap().iter().find(|i| i["patch"] == patch).unwrap();
    assert_eq!(snoozed["snoozesLeft"].as_u64().unwrap(), item["snoozesLeft"].as_u64().unwrap() - 1);
    assert!(after["requests"].as_array().unwrap().iter().any(|r| r["item"] == patch && r["kind"] == "snooze"));
    browser.screenshot(&shots, "portal-snoozed").await;
    // Software offered on demand: the user installs it now.
    browser.find("#pending tr[data-patch='7zip@24.08'] form[action='/portal/install'] button").await.click().await;
    browser.wait_for_text(".flash.ok", "will be installed at the agent's next pass").await;
    let requested = fleet.api("/api/v1/user/device", &fleet.user).await;
    assert!(
        requested["requests"].as_array().unwrap().iter().any(|r| r["item"] == "7zip@24.08" && r["kind"] == "install"),
        "{requested}"
    );
    browser.go(&format!("{base}/console/devices/ws-0077")).await;
    let refused = browser.text("main").await;
    assert!(refused.contains("for admins") && !refused.contains("KB"), "{refused}");
    // The refusal offers a way back.
    browser.find("p.way-back a[href='/']").await.click().await;
    browser.wait_for_url(&format!("{base}/portal")).await;
    browser.screenshot(&shots, "portal-back").await;

    browser.quit().await;
    fleet.running.shutdown().await;
}
