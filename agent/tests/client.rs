//! The engine client against a real HTTP server on 127.0.0.1: it asks for
//! the desired state gzipped (the engine holds and sends states so) and
//! reads it whichever way it comes.

mod support;

use std::io::Write as _;
use std::time::Duration;

use patchward_agent::client::{EngineClient, Fetched};
use support::http::{Body, Reply, Server};

const ENVELOPE: &str = r#"{"payloadType":"application/vnd.patchward.desired-state+json","payload":"e30=","signatures":[{"keyid":"k1","sig":"c2ln"}]}"#;

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn fetch(server: &Server) -> Fetched {
    let credential = Some(patchward_api::logging::Secret::new("pwd_test".to_owned()));
    let client = EngineClient::new(&format!("http://{}", server.addr), credential, Duration::from_secs(10)).unwrap();
    client.desired_state(None, None).await.unwrap()
}

#[tokio::test]
async fn the_desired_state_is_asked_for_gzipped_and_read_either_way() {
    let gzip = gzipped(ENVELOPE.as_bytes());
    let server = Server::start(move |request, _| {
        let accepts = request.accept_encoding.as_deref().is_some_and(|a| a.contains("gzip"));
        match accepts {
            true => Reply::new(200, Body::Exact(gzip.clone())).header("Content-Encoding", "gzip"),
            false => Reply::new(200, Body::Exact(ENVELOPE.as_bytes().to_vec())),
        }
        .header("ETag", "\"3-1700000000-gz\"")
    })
    .await;
    let Fetched::Envelope { envelope, etag } = fetch(&server).await else { panic!("an envelope") };
    assert_eq!((envelope.payload.as_str(), etag.as_deref()), ("e30=", Some("\"3-1700000000-gz\"")));
    let asked = server.requests();
    assert!(asked[0].accept_encoding.as_deref().is_some_and(|a| a.contains("gzip")), "{asked:?}");

    // A server that sends JSON as it is is read as well.
    let plain = Server::start(|_, _| Reply::new(200, Body::Exact(ENVELOPE.as_bytes().to_vec()))).await;
    let Fetched::Envelope { envelope, .. } = fetch(&plain).await else { panic!("an envelope") };
    assert_eq!(envelope.signatures[0].keyid, "k1");
}
