//! Replicas on one database: the leader's lease and its fencing, the
//! signed desired states every replica serves, and the signals they send
//! each other (LISTEN/NOTIFY). See `store::replicas`.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_postgres::{AsyncMessage, NoTls};

use super::PgStore;
use crate::store::StoreError;
use crate::store::replicas::{CHANNEL, Fencing, Lease, LeaseState, ServedDesired, Signal, SignedDesired};
use crate::store::signed_body::SignedBody;

/// A connection that listens on [`CHANNEL`]: its signals arrive in order,
/// and the stream ends when the connection does (the caller reconnects
/// and catches up from the store).
pub struct Listener {
    // Dropping the client closes the connection.
    _client: tokio_postgres::Client,
    signals: tokio::sync::mpsc::UnboundedReceiver<Signal>,
}

impl Listener {
    /// The next signal; `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Signal> {
        self.signals.recv().await
    }
}

impl PgStore {
    pub fn set_fencing(&self, fencing: Fencing) {
        *self.fencing.write().unwrap_or_else(|p| p.into_inner()) = fencing;
    }

    /// Refuses a leader write unless this replica holds the lease now, by
    /// the database's clock. The lease row stays share-locked to the end of
    /// `tx`, so no other replica can take it before this write commits.
    pub(super) async fn fence(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
        let lease = match &*self.fencing.read().unwrap_or_else(|p| p.into_inner()) {
            Fencing::Off => return Ok(()),
            Fencing::Follower => return Err(StoreError::Fenced { reason: "this replica does not lead".into() }),
            Fencing::Leader(lease) => lease.clone(),
        };
        let held = tx
            .query_opt(
                "SELECT 1 FROM leader_lease WHERE name = 'engine' AND holder = $1 AND epoch = $2 \
                 AND expires_at > now() FOR SHARE",
                &[&lease.holder, &(lease.epoch as i64)],
            )
            .await
            .map_err(self.db("check the leader's lease"))?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced { reason: format!("the lease of epoch {} has passed on", lease.epoch) }),
        }
    }

    /// Renews the lease while `holder` holds it, else takes it if it is
    /// free or expired (with the next epoch); says who leads after. A
    /// holder is one process (its id is random per start), so it renews
    /// its lease even when it lost track of the epoch (a claim that failed
    /// on the network) and keeps that epoch.
    pub async fn claim_lease(&self, holder: &str, address: &str, ttl: Duration) -> Result<LeaseState, StoreError> {
        let client = self.client().await?;
        let claimed = client
            .query_opt(
                "UPDATE leader_lease SET \
                   epoch = CASE WHEN holder = $1 AND expires_at > now() THEN epoch ELSE epoch + 1 END, \
                   holder = $1, address = $2, expires_at = now() + make_interval(secs => $3) \
                 WHERE name = 'engine' AND (holder = $1 OR expires_at <= now()) \
                 RETURNING epoch",
                &[&holder, &address, &ttl.as_secs_f64()],
            )
            .await
            .map_err(self.db("claim the leader's lease"))?;
        if let Some(row) = claimed {
            let lease = Lease { holder: holder.to_owned(), epoch: row.get::<_, i64>(0) as u64 };
            let ours = Some(holder.to_owned());
            return Ok(LeaseState { lease: Some(lease), leader: ours, leader_address: Some(address.to_owned()) });
        }
        let row = client
            .query_opt("SELECT holder, address FROM leader_lease WHERE name = 'engine' AND expires_at > now()", &[])
            .await
            .map_err(self.db("read the leader's lease"))?;
        let (leader, leader_address) = row.map_or((None, None), |row| (row.get(0), row.get(1)));
        Ok(LeaseState { lease: None, leader, leader_address })
    }

    /// Gives the lease up at once (a graceful stop), and tells the others.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE leader_lease SET holder = NULL, address = NULL, expires_at = '-infinity' \
                 WHERE name = 'engine' AND holder = $1 AND epoch = $2",
                &[&lease.holder, &(lease.epoch as i64)],
            )
            .await
            .map_err(self.db("release the leader's lease"))?;
        self.set_fencing(Fencing::Follower);
        self.signal(&Signal::Released).await
    }

    /// Stores signed states for every replica to serve, under the next
    /// sequence number, and signals it (delivered when this commits).
    pub async fn publish_desired(&self, states: &[SignedDesired]) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        self.fence(&tx).await?;
        let seq: i64 = tx
            .query_one("UPDATE counter SET value = value + 1 WHERE name = 'desired' RETURNING value", &[])
            .await
            .map_err(self.db("write"))?
            .get(0);
        let column = |f: fn(&SignedDesired) -> String| states.iter().map(f).collect::<Vec<String>>();
        let devices = column(|s| s.device.clone());
        let etags = column(|s| s.state.etag.clone());
        let issued = column(|s| s.state.issued_at.to_string());
        let expires = column(|s| s.state.expires_at.to_string());
        let digests = column(|s| s.state.digest.clone());
        let generations: Vec<i64> = states.iter().map(|s| s.state.generation as i64).collect();
        let bodies: Vec<&[u8]> = states.iter().map(|s| s.state.body.gzip().as_ref()).collect();
        tx.execute(
            "INSERT INTO signed_desired (device, generation, etag, body, issued_at, expires_at, digest, seq) \
             SELECT d, g, e, b, i, x, h, $8 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bytea[], \
               $5::text[], $6::text[], $7::text[]) AS t(d, g, e, b, i, x, h) \
             ON CONFLICT (device) DO UPDATE SET generation = EXCLUDED.generation, etag = EXCLUDED.etag, \
               body = EXCLUDED.body, issued_at = EXCLUDED.issued_at, expires_at = EXCLUDED.expires_at, \
               digest = EXCLUDED.digest, seq = EXCLUDED.seq",
            &[&devices, &generations, &etags, &bodies, &issued, &expires, &digests, &seq],
        )
        .await
        .map_err(self.db("write"))?;
        notify(&tx, &Signal::Desired { seq: seq as u64 }).await.map_err(self.db("write"))?;
        tx.commit().await.map_err(self.db("commit"))
    }

    /// The states published after `after`, and the newest sequence number
    /// among them (`after` when there are none).
    pub async fn desired_since(&self, after: u64) -> Result<(Vec<SignedDesired>, u64), StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT device, generation, etag, body, issued_at, expires_at, digest, seq FROM signed_desired \
                 WHERE seq > $1 ORDER BY seq",
                &[&(after as i64)],
            )
            .await
            .map_err(self.db("read"))?;
        let mut last = after;
        let mut states = Vec::with_capacity(rows.len());
        for row in &rows {
            last = last.max(row.get::<_, i64>(7) as u64);
            states.push(self.signed_desired_of(row)?);
        }
        Ok((states, last))
    }

    /// One device's published state.
    pub async fn signed_desired(&self, device: &str) -> Result<Option<SignedDesired>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT device, generation, etag, body, issued_at, expires_at, digest FROM signed_desired \
                 WHERE device = $1",
                &[&device],
            )
            .await
            .map_err(self.db("read"))?;
        row.map(|row| self.signed_desired_of(&row)).transpose()
    }

    fn signed_desired_of(&self, row: &tokio_postgres::Row) -> Result<SignedDesired, StoreError> {
        let device: String = row.get(0);
        let time = |index: usize| {
            row.get::<_, &str>(index)
                .parse::<jiff::Timestamp>()
                .map_err(|e| self.corrupted(format!("the signed state of {device} does not decode: {e}")))
        };
        let state = ServedDesired {
            generation: row.get::<_, i64>(1) as u64,
            etag: row.get(2),
            body: SignedBody::from_stored(row.get::<_, Vec<u8>>(3)),
            issued_at: time(4)?,
            expires_at: time(5)?,
            digest: row.get(6),
        };
        Ok(SignedDesired { device, state })
    }

    /// Tells every listening replica (and this one).
    pub async fn signal(&self, signal: &Signal) -> Result<(), StoreError> {
        let client = self.client().await?;
        let payload = serde_json::to_string(signal).expect("a signal serializes");
        client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map_err(self.db("signal"))?;
        Ok(())
    }

    /// Opens a connection of its own that listens for signals.
    pub async fn listen(&self) -> Result<Listener, StoreError> {
        let unreachable = |e: tokio_postgres::Error| StoreError::Unreachable {
            location: self.location.clone(),
            reason: e.to_string(),
        };
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(unreachable)?;
        let (sender, signals) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(note) = message {
                    match serde_json::from_str::<Signal>(note.payload()) {
                        Ok(signal) => {
                            if sender.send(signal).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(payload = note.payload(), error = %e, "a signal this replica does not know")
                        }
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(unreachable)?;
        Ok(Listener { _client: client, signals })
    }
}

/// Sends `signal` when `tx` commits (and never if it does not).
async fn notify(tx: &deadpool_postgres::Transaction<'_>, signal: &Signal) -> Result<(), tokio_postgres::Error> {
    let payload = serde_json::to_string(signal).expect("a signal serializes");
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map(|_| ())
}
