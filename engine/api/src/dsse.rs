//! DSSE envelopes (the in-toto / Sigstore convention) with ed25519: how the
//! engine signs every desired state and the agent checks it. The signature
//! covers DSSE's pre-authentication encoding (PAE) of the payload type and
//! the payload bytes, so neither can be swapped without breaking it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The payload type of a desired state.
pub const DESIRED_STATE_TYPE: &str = "application/vnd.patchward.desired-state+json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// The payload, base64 (standard alphabet, padded).
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// sha256 of the raw public key, hex: which key signed.
    pub keyid: String,
    /// The ed25519 signature over the PAE, base64.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("the payload type is `{found}`, not `{expected}`")]
    PayloadType { expected: String, found: String },
    #[error("the payload is not base64: {0}")]
    Payload(String),
    #[error("no signature by key {keyid} verifies")]
    Unsigned { keyid: String },
    #[error("`{0}` is not a public key written `ed25519:BASE64` (the raw 32 bytes)")]
    PublicKey(String),
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in decimal.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The key id DSSE signatures carry: sha256 of the raw public key, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A public key as DESIGN writes it: `ed25519:BASE64`.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", STANDARD.encode(key.as_bytes()))
}

pub fn parse_public_key(text: &str) -> Result<VerifyingKey, DsseError> {
    let bad = || DsseError::PublicKey(text.to_owned());
    let encoded = text.strip_prefix("ed25519:").ok_or_else(bad)?;
    let bytes: [u8; 32] = STANDARD.decode(encoded).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// Signs `body` as `payload_type`.
pub fn sign(payload_type: &str, body: &[u8], key: &SigningKey) -> Envelope {
    let signature = key.sign(&pae(payload_type, body));
    Envelope {
        payload_type: payload_type.to_owned(),
        payload: STANDARD.encode(body),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: STANDARD.encode(signature.to_bytes()),
        }],
    }
}

/// The payload, if the envelope is of `payload_type` and some signature
/// verifies with `key`. Nothing of an envelope that fails is returned.
pub fn verify(envelope: &Envelope, payload_type: &str, key: &VerifyingKey) -> Result<Vec<u8>, DsseError> {
    if envelope.payload_type != payload_type {
        return Err(DsseError::PayloadType { expected: payload_type.to_owned(), found: envelope.payload_type.clone() });
    }
    let body = STANDARD.decode(&envelope.payload).map_err(|e| DsseError::Payload(e.to_string()))?;
    let message = pae(payload_type, &body);
    let verifies = envelope.signatures.iter().any(|s| {
        STANDARD
            .decode(&s.sig)
            .ok()
            .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
            .is_some_and(|signature| key.verify(&message, &signature).is_ok())
    });
    if verifies { Ok(body) } else { Err(DsseError::Unsigned { keyid: key_id(key) }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// The example of the DSSE specification (protocol.md).
    #[test]
    fn pae_matches_the_specification() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn signed_envelopes_verify_and_tampered_ones_do_not() {
        let signer = key(7);
        let public = signer.verifying_key();
        let envelope = sign(DESIRED_STATE_TYPE, br#"{"generation":3}"#, &signer);
        assert_eq!(verify(&envelope, DESIRED_STATE_TYPE, &public).unwrap(), br#"{"generation":3}"#);
        assert_eq!(envelope.signatures[0].keyid.len(), 64);

        let mut payload = envelope.clone();
        payload.payload = STANDARD.encode(br#"{"generation":4}"#);
        assert!(matches!(verify(&payload, DESIRED_STATE_TYPE, &public), Err(DsseError::Unsigned { .. })));

        let mut kind = envelope.clone();
        kind.payload_type = "application/json".into();
        assert!(matches!(verify(&kind, DESIRED_STATE_TYPE, &public), Err(DsseError::PayloadType { .. })));
        // The type is signed too: relabelling it and asking for the new label fails.
        assert!(matches!(verify(&kind, "application/json", &public), Err(DsseError::Unsigned { .. })));

        assert!(matches!(
            verify(&envelope, DESIRED_STATE_TYPE, &key(8).verifying_key()),
            Err(DsseError::Unsigned { .. })
        ));
        let mut garbage = envelope;
        garbage.signatures[0].sig = "not base64!".into();
        assert!(verify(&garbage, DESIRED_STATE_TYPE, &public).is_err());
    }

    #[test]
    fn public_keys_round_trip_as_design_writes_them() {
        let public = key(1).verifying_key();
        let text = public_key_text(&public);
        assert!(text.starts_with("ed25519:"));
        assert_eq!(parse_public_key(&text).unwrap(), public);
        for bad in ["ed25519:", "ed25519:AAAA", "rsa:AAAA", "ed25519:!!"] {
            assert!(parse_public_key(bad).is_err(), "{bad}");
        }
    }
}
