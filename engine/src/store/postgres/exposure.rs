//! Exposure records in the PostgreSQL backend (`store::exposure`); the
//! remediation tally is the engine state `remediation`, as in sled.

use std::collections::BTreeMap;

use tokio_postgres::types::Json;

use super::PgStore;
use crate::store::StoreError;
use crate::store::exposure::{DeviceExposure, RemediationTally};

const REMEDIATION_STATE: &str = "remediation";

impl PgStore {
    pub async fn exposures(&self) -> Result<BTreeMap<String, DeviceExposure>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT device, record FROM exposure", &[]).await.map_err(self.db("read"))?;
        Ok(rows.into_iter().map(|row| (row.get(0), row.get::<_, Json<DeviceExposure>>(1).0)).collect())
    }

    /// The devices' records and the tally's increase, in one transaction.
    pub async fn record_exposures(
        &self,
        changed: &[(String, DeviceExposure)],
        remediated: RemediationTally,
    ) -> Result<(), StoreError> {
        if changed.is_empty() && remediated.remediated == 0 {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        self.fence(&tx).await?;
        for (device, record) in changed {
            tx.execute(
                "INSERT INTO exposure (device, record) VALUES ($1, $2) \
                 ON CONFLICT (device) DO UPDATE SET record = EXCLUDED.record",
                &[device, &Json(record)],
            )
            .await
            .map_err(self.db("write"))?;
        }
        if remediated.remediated > 0 {
            let row = tx
                .query_opt("SELECT value FROM engine_state WHERE name = $1 FOR UPDATE", &[&REMEDIATION_STATE])
                .await
                .map_err(self.db("read"))?;
            let mut tally: RemediationTally = match row {
                Some(row) => serde_json::from_value(row.get(0))
                    .map_err(|e| self.corrupted(format!("the remediation tally does not decode: {e}")))?,
                None => RemediationTally::default(),
            };
            tally += remediated;
            tx.execute(
                "INSERT INTO engine_state (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&REMEDIATION_STATE, &Json(&tally)],
            )
            .await
            .map_err(self.db("write"))?;
        }
        tx.commit().await.map_err(self.db("commit"))
    }

    pub async fn remediation_tally(&self) -> Result<RemediationTally, StoreError> {
        Ok(self.engine_state(REMEDIATION_STATE).await?.unwrap_or_default())
    }
}
