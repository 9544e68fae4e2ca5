//! A signed desired state's bytes (its DSSE envelope as JSON), held
//! gzipped for as long as it is served.
//!
//! A state repeats each item's deployment policy and windows, so its
//! envelope is 10–160 KiB, and the engine holds one per device: a
//! million of them would not fit in memory. The repetition survives
//! base64, and gzipped they are 1–3 KiB. An agent that accepts gzip gets
//! these bytes as they are held; any other client gets them inflated for
//! its answer, the same JSON.
//!
//! The gzip member is deterministic (no name, no time), so every replica
//! that holds a state holds, and answers, the same bytes.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// How hard to compress: a full plan compresses every device's state, and
/// the fastest level already takes most of what there is to take (the
/// repetition is long-range, not subtle).
const LEVEL: Compression = Compression::fast();

/// The first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The bytes of one signed state, gzipped.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedBody {
    gzip: bytes::Bytes,
}

impl SignedBody {
    /// `json`, compressed.
    pub fn compress(json: &[u8]) -> Self {
        let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 16), LEVEL);
        encoder.write_all(json).expect("writing to memory cannot fail");
        let mut gzip = encoder.finish().expect("writing to memory cannot fail");
        // Held for as long as it is served: no spare room with it.
        gzip.shrink_to_fit();
        Self { gzip: gzip.into() }
    }

    /// Bytes as the store keeps them: gzip, or (published before states
    /// were kept gzipped) the envelope's JSON itself, compressed now.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        if bytes.starts_with(&GZIP_MAGIC) { Self { gzip: bytes.into() } } else { Self::compress(&bytes) }
    }

    /// The gzip member: what the store keeps and what a client that
    /// accepts gzip is sent. Shared, not copied.
    pub fn gzip(&self) -> &bytes::Bytes {
        &self.gzip
    }

    /// The envelope's JSON, inflated. An error only for bytes damaged
    /// where they were stored (a row of the shared store).
    pub fn json(&self) -> std::io::Result<Vec<u8>> {
        let mut json = Vec::with_capacity(self.gzip.len() * 32);
        GzDecoder::new(self.gzip.as_ref()).read_to_end(&mut json)?;
        Ok(json)
    }
}

impl std::fmt::Debug for SignedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedBody({} bytes gzipped)", self.gzip.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Vec<u8> {
        let item = r#"{"patch":"KB1","policy":{"name":"fast","mode":"immediate"},"windows":[]}"#;
        format!(r#"{{"payloadType":"t","payload":"{}","items":[{}]}}"#, "QUJD".repeat(500), [item; 40].join(","))
            .into_bytes()
    }

    #[test]
    fn a_body_inflates_to_the_json_it_was_given_and_is_much_smaller() {
        let json = envelope();
        let body = SignedBody::compress(&json);
        assert_eq!(body.json().unwrap(), json);
        assert!(body.gzip().len() * 10 < json.len(), "{} of {}", body.gzip().len(), json.len());
        assert!(body.gzip().starts_with(&GZIP_MAGIC));
        let mut damaged = body.gzip().to_vec();
        damaged.truncate(damaged.len() / 2);
        assert!(SignedBody::from_stored(damaged).json().is_err(), "damaged bytes are an error, not a panic");
    }

    /// Replicas answer the same bytes: compressing is deterministic, and
    /// the store's bytes come back as they were, whether they were kept
    /// gzipped or (before) as JSON.
    #[test]
    fn stored_bytes_read_back_as_the_same_body() {
        let json = envelope();
        let body = SignedBody::compress(&json);
        assert_eq!(SignedBody::compress(&json), body);
        assert_eq!(SignedBody::from_stored(body.gzip().to_vec()), body);
        assert_eq!(SignedBody::from_stored(json.clone()), body);
    }
}
