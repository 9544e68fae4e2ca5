//! The benchmarks' simulated fleet: one device's facts by its index, and
//! its enrollment as an agent does it (enroll, then the first inventory,
//! which gets it planned). The load and console benchmarks share it, so
//! "the load benchmark's fleet" is one fleet.

/// Device `index`'s facts: Windows and Debian alternate, one in ten is in
/// the pilot ring, and addresses spread over 10.20.0.0/16.
pub fn device_facts(index: usize) -> serde_json::Value {
    let (os, platform) = if index % 2 == 0 { ("windows", "windows-11-23h2") } else { ("linux", "debian-12") };
    serde_json::json!({"hostname": format!("load-{index:05}"), "os": os,
        "platform": platform, "arch": "x86_64", "language": "en-US",
        "labels": {"ring": if index % 10 == 0 { "pilot" } else { "production" }},
        "ip": format!("10.20.{}.{}", (index / 250) % 250, index % 250 + 1)})
}

/// Enrolls a device with `facts` through `token` and uploads its empty
/// inventory: its credential.
pub async fn enroll(http: &reqwest::Client, base: &str, token: &str, facts: &serde_json::Value) -> String {
    let reply = send(http.post(format!("{base}/api/v1/enroll")), token, serde_json::json!({"facts": facts})).await;
    let reply: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    let credential = reply["credential"].as_str().unwrap_or_else(|| panic!("enrollment refused: {reply}")).to_owned();
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
    let put = send(http.put(format!("{base}/api/v1/device/inventory")), &credential, inventory).await;
    assert!(put.status().is_success(), "inventory refused: {}", put.status());
    credential
}

/// Sends `body` as JSON with `bearer`.
pub async fn send(request: reqwest::RequestBuilder, bearer: &str, body: serde_json::Value) -> reqwest::Response {
    request.bearer_auth(bearer).header("content-type", "application/json").body(body.to_string()).send().await.unwrap()
}
