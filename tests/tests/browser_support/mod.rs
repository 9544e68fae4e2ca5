//! A small WebDriver client (the W3C protocol, JSON over HTTP) driving
//! Debian's headless Chromium through `chromedriver`: enough to sign in,
//! fill and submit forms, read text, run a script and take screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver` on a loopback port, stopped on drop.
pub struct Driver {
    child: Child,
    pub url: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Driver {
    /// Starts `chromedriver`; a machine without it (and `chromium`) fails
    /// the test with what to install, as `.ci/run` does.
    pub async fn start() -> Driver {
        let driver = Path::new("/usr/bin/chromedriver");
        assert!(
            driver.exists() && Path::new("/usr/bin/chromium").exists(),
            "the browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // Ready when its status says so; each try is a real request.
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(reply) = http.get(format!("{url}/status")).send().await
                && let Ok(bytes) = reply.bytes().await
                && let Ok(body) = serde_json::from_slice::<Value>(&bytes)
                && body["value"]["ready"] == true
            {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(ready, "chromedriver did not become ready on {url}");
        Driver { child, url, http, _profile: tempfile::tempdir().unwrap() }
    }

    /// A new headless browser. The flags keep Chromium off the network it
    /// cannot reach here (background updates, sync, QUIC).
    pub async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let reply = self.command("POST", "/session", Some(capabilities)).await;
        let session = reply["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}")).to_owned();
        Browser { driver: self.url.clone(), http: self.http.clone(), session, _profile: profile }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        send(&self.http, method, &format!("{}{path}", self.url), body).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(http: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http
            .post(url)
            .header("content-type", "application/json")
            .body(body.unwrap_or_else(|| json!({})).to_string()),
    };
    let reply = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let bytes = reply.bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(error) = body["value"]["error"].as_str() {
        panic!("{method} {url}: {error}: {}", body["value"]["message"]);
    }
    body["value"].clone()
}

/// One browser session.
pub struct Browser {
    driver: String,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        send(&self.http, method, &format!("{}/session/{}{path}", self.driver, self.session), body).await
    }

    pub async fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.command("GET", "/url", None).await.as_str().unwrap().to_owned()
    }

    /// The first element `css` selects; panics naming the page when none.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let found = self.find_all(css).await;
        match found.into_iter().next() {
            Some(element) => element,
            None => panic!("no `{css}` on {}: {}", self.url().await, self.text("body").await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let reply = self.command("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        reply
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Element { browser: self, id: e[ELEMENT].as_str().unwrap_or_else(|| panic!("{e}")).to_owned() })
            .collect()
    }

    /// The text of the first element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let reply = self.command("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        match reply.as_array().and_then(|a| a.first()) {
            Some(e) => {
                let id = e[ELEMENT].as_str().unwrap();
                self.command("GET", &format!("/element/{id}/text"), None).await.as_str().unwrap_or("").to_owned()
            }
            None => String::new(),
        }
    }

    /// The text of `css` once it holds `needle`: a click's navigation may
    /// still be loading. Panics with the page's text when it never does.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        for _ in 0..100 {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("`{css}` never said `{needle}` on {}: {}", self.url().await, self.text("body").await)
    }

    /// Waits until the page's URL is `url`: a click's navigation may still
    /// be under way.
    pub async fn wait_for_url(&self, url: &str) {
        for _ in 0..100 {
            if self.url().await == url {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("never reached {url}; at {}: {}", self.url().await, self.text("body").await)
    }

    /// Runs `script` (a function body; `arguments[...]`, may return a
    /// promise) in the page.
    pub async fn run(&self, script: &str) -> Value {
        self.command("POST", "/execute/async", Some(json!({"script": script, "args": []}))).await
    }

    pub async fn delete_cookies(&self) {
        self.command("DELETE", "/cookie", None).await;
    }

    /// Saves the page as a PNG under `dir`, and returns its path.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        use base64::Engine as _;
        let data = self.command("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub async fn quit(self) {
        self.command("DELETE", "", None).await;
    }
}

pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    pub async fn type_text(&self, text: &str) {
        self.browser.command("POST", &format!("/element/{}/value", self.id), Some(json!({"text": text}))).await;
    }

    pub async fn click(&self) {
        self.browser.command("POST", &format!("/element/{}/click", self.id), None).await;
    }

    pub async fn text(&self) -> String {
        self.browser.command("GET", &format!("/element/{}/text", self.id), None).await.as_str().unwrap_or("").to_owned()
    }
}
