//! The demo reads the engine as an admin does, over its HTTP API: what the
//! console and `curl` see is what the tour prints.

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// An admin's client of one engine.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// One device as `GET /api/v1/devices` lists it, reduced to what the tour
/// follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    pub id: String,
    /// The `ring` label the agent reports.
    pub ring: Option<String>,
    pub platform: Option<String>,
    /// The version of the followed package in the device's last inventory.
    pub package_version: Option<String>,
    /// The followed patch's item, when the device has one.
    pub item: Option<ItemView>,
    /// `compliant`, `pending` or `non-compliant`.
    pub compliance: String,
    /// The latest report the device sent for the patch: `succeeded` or `failed`.
    pub report: Option<String>,
    /// What that report was of: `install` or `uninstall`.
    pub report_action: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemView {
    /// `install`, or `uninstall` for a retraction.
    pub action: String,
    /// `installed`, `due`, `scheduled`, `blocked`, `removed`.
    pub status: String,
    pub stage: Option<u64>,
    pub not_before: Option<String>,
}

/// The compliance view's headline numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct ComplianceView {
    pub devices: u64,
    pub compliant: u64,
    pub percent: f64,
}

/// One patch as `GET /api/v1/catalog` lists it, reduced to what the tour
/// reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogView {
    pub id: String,
    /// `unrated` for an advisory that carries no severity.
    pub severity: String,
    /// In the source's coverage and not obsolete: what rules see.
    pub active: bool,
    /// The rules whose `match` is true for it.
    pub matched_by: Vec<String>,
    /// How many devices it applies to that do not have it.
    pub missing: usize,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> anyhow::Result<AdminClient> {
        let http = crate::catalog::fetch::client(&crate::catalog::fetch::FetchLimits::default())
            .context("failed to make an HTTP client")?;
        Ok(AdminClient { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
        let response = request
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("failed to reach the engine for {what}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("the engine answered {what} with {status}: {}", text.trim());
        }
        Ok(response)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self.send(self.http.get(format!("{}{path}", self.base)), path).await?;
        let bytes = response.bytes().await.with_context(|| format!("failed to read the answer to {path}"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {path} is not JSON"))
    }

    /// `GET path`, read as `T`.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.http.get(format!("{}{path}", self.base)), path).await?;
        let bytes = response.bytes().await.with_context(|| format!("failed to read the answer to {path}"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {path} is not what the demo expects"))
    }

    /// The catalog's row of patch `id`.
    pub async fn catalog_patch(&self, id: &str) -> anyhow::Result<CatalogView> {
        #[derive(Deserialize)]
        struct Catalog {
            patches: Vec<CatalogView>,
        }
        let catalog: Catalog = self.get_as("/api/v1/catalog").await?;
        match catalog.patches.into_iter().find(|p| p.id == id) {
            Some(patch) => Ok(patch),
            None => bail!("the engine's catalog (GET {}/api/v1/catalog) has no {id}", self.base),
        }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let response = self.send(request, path).await?;
        let bytes = response.bytes().await.with_context(|| format!("failed to read the answer to {path}"))?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {path} is not JSON"))
    }

    /// `POST /api/v1/tokens`: a new token of `kind` (`enrollment`, `user`).
    pub async fn create_token(&self, body: serde_json::Value) -> anyhow::Result<String> {
        let answer = self.post("/api/v1/tokens", body).await?;
        answer["token"].as_str().map(str::to_owned).context("the engine's answer holds no token")
    }

    /// `POST /api/v1/sync`: reconcile now, as a webhook would ask.
    pub async fn sync(&self) -> anyhow::Result<()> {
        self.post("/api/v1/sync", serde_json::json!({})).await.map(|_| ())
    }

    /// The applied revision and the catalog's revision.
    pub async fn in_force(&self) -> anyhow::Result<(Option<String>, u64)> {
        let status = self.get("/api/v1/status").await?;
        let applied = status["applied"]["revision"].as_str().map(str::to_owned);
        Ok((applied, status["catalogRevision"].as_u64().unwrap_or(0)))
    }

    /// Every device, with `patch`'s item and `package`'s version.
    pub async fn devices(&self, patch: &str, package: &str) -> anyhow::Result<Vec<DeviceView>> {
        let answer = self.get("/api/v1/devices?limit=10000").await?;
        let devices = answer["devices"].as_array().context("the devices view lists no devices")?;
        Ok(devices.iter().map(|d| device_view(d, patch, package)).collect())
    }

    pub async fn compliance(&self) -> anyhow::Result<ComplianceView> {
        let answer = self.get("/api/v1/compliance").await?;
        Ok(ComplianceView {
            devices: answer["devices"].as_u64().unwrap_or(0),
            compliant: answer["compliant"].as_u64().unwrap_or(0),
            percent: answer["compliantPercent"].as_f64().unwrap_or(0.0),
        })
    }
}

fn device_view(device: &serde_json::Value, patch: &str, package: &str) -> DeviceView {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let item = device["items"].as_array().and_then(|items| items.iter().find(|i| i["patch"] == patch));
    let package_version = device["inventory"]["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == package && p["manager"] == "dpkg"))
        .and_then(|p| text(&p["version"]));
    let report = device["reports"].as_array().and_then(|reports| reports.iter().rev().find(|r| r["patch"] == patch));
    DeviceView {
        id: text(&device["id"]).unwrap_or_default(),
        ring: text(&device["facts"]["labels"]["ring"]),
        platform: text(&device["facts"]["platform"]),
        package_version,
        item: item.map(|i| ItemView {
            action: text(&i["action"]).unwrap_or_default(),
            status: text(&i["status"]).unwrap_or_default(),
            stage: i["stage"].as_u64(),
            not_before: text(&i["notBefore"]),
        }),
        compliance: text(&device["compliance"]).unwrap_or_default(),
        report: report.and_then(|r| text(&r["status"])),
        report_action: report.and_then(|r| text(&r["action"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_read_from_the_devices_view() {
        let device = serde_json::json!({
            "id": "pilot-01",
            "facts": {"platform": "debian-12", "labels": {"ring": "pilot"}},
            "inventory": {"patches": [], "packages": [
                {"manager": "dpkg", "name": "base-files", "version": "12.4"},
                {"manager": "dpkg", "name": "pw-hello", "version": "0.9"}
            ]},
            "reports": [{"patch": "PW-DEMO-0001", "status": "failed", "at": "2026-12-01T12:00:00Z"},
                        {"patch": "PW-DEMO-0001", "status": "succeeded", "at": "2026-12-01T12:01:00Z",
                         "action": "install"}],
            "compliance": "pending",
            "items": [{"patch": "PW-DEMO-0001", "action": "install", "status": "due", "stage": 1,
                       "notBefore": "2026-12-01T12:00:00Z"}]
        });
        let view = device_view(&device, "PW-DEMO-0001", "pw-hello");
        assert_eq!(
            view,
            DeviceView {
                id: "pilot-01".into(),
                ring: Some("pilot".into()),
                platform: Some("debian-12".into()),
                package_version: Some("0.9".into()),
                item: Some(ItemView {
                    action: "install".into(),
                    status: "due".into(),
                    stage: Some(1),
                    not_before: Some("2026-12-01T12:00:00Z".into())
                }),
                compliance: "pending".into(),
                report: Some("succeeded".into()),
                report_action: Some("install".into()),
            }
        );
        let bare = device_view(&serde_json::json!({"id": "prod-01"}), "PW-DEMO-0001", "pw-hello");
        assert_eq!(bare.item, None);
        assert_eq!(bare.package_version, None);
    }
}
