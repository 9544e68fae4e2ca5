//! Talking to a running engine over HTTP as agents, admins and webhooks
//! do.

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }
}

impl Client {
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>) -> Reply {
        self.send_with(method, path, token, body, &[]).await
    }

    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        Reply { status, etag, text: response.text().await.unwrap() }
    }
}

pub fn desired_items(reply: &Reply) -> Vec<String> {
    let envelope: patchward_api::dsse::Envelope = serde_json::from_str(&reply.text).unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.decode(&envelope.payload).unwrap();
    let state: patchward_api::desired::DesiredState = serde_json::from_slice(&payload).unwrap();
    state.items.into_iter().map(|i| i.patch).collect()
}

pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Enrolls a device with `facts` through `token` and uploads its first,
/// empty inventory, as an agent's first pass does: its credential.
pub async fn enroll_device(client: &Client, token: &str, facts: &serde_json::Value) -> String {
    let enrolled = client.send("POST", "/api/v1/enroll", Some(token), Some(serde_json::json!({"facts": facts}))).await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.text);
    let credential = enrolled.json()["credential"].as_str().unwrap().to_owned();
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
    let put = client.send("PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory)).await;
    assert_eq!(put.status, 200, "{}", put.text);
    credential
}

pub async fn webhook(client: &Client) {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = hub_signature(b"s3cret-for-webhooks", body);
    let response = client
        .http
        .post(format!("{}/api/v1/sync", client.base))
        .header("x-hub-signature-256", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

/// Polls the status until `check` holds (the reconciler runs on its own
/// task; this waits for it, it does not pass time).
pub async fn status_until(
    client: &Client,
    admin: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = client.send("GET", "/api/v1/status", Some(admin), None).await.json();
        if check(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the status never got there: {last:#}");
}
