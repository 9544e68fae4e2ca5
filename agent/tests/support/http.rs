//! A hand-written HTTP/1.1 server on 127.0.0.1:0 for the download tests.
//!
//! It is hand-written, not axum, so a test can misbehave exactly: lie in
//! Content-Length, drop the connection midway, stall, send forever, ignore
//! Range. Every connection serves one request (`Connection: close`), and
//! every request is recorded for the test to inspect.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub accept_encoding: Option<String>,
}

impl Request {
    /// The N of `Range: bytes=N-`.
    pub fn range_start(&self) -> Option<u64> {
        self.range.as_deref()?.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
    }
}

pub enum Body {
    /// The bytes with `Content-Length` (unless the reply sets its own).
    Exact(Vec<u8>),
    /// Headers as for `Exact(full)` but only `sent` is written, then the
    /// connection is closed: an interruption.
    CutAfter { full_len: u64, sent: Vec<u8> },
    /// These bytes, then nothing more, the connection held open.
    ThenHang(Vec<u8>),
    /// Chunked transfer, ending cleanly after these bytes.
    Chunked(Vec<u8>),
    /// Chunked transfer that never ends (until the client goes away).
    Endless,
    /// `chunk` bytes at a time, one per `every`, up to `total` bytes.
    Trickle { total: Vec<u8>, chunk: usize, every: Duration },
    /// No response at all, the connection held open.
    Silence,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16, body: Body) -> Reply {
        Reply { status, headers: vec![], body }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn status(status: u16) -> Reply {
        Reply::new(status, Body::Exact(format!("status {status}").into_bytes()))
    }

    /// `bytes`, honouring a `Range: bytes=N-` with 206 and Content-Range.
    pub fn ranged(bytes: &[u8], request: &Request) -> Reply {
        match request.range_start() {
            Some(start) if (start as usize) < bytes.len() => {
                let end = bytes.len() - 1;
                Reply::new(206, Body::Exact(bytes[start as usize..].to_vec()))
                    .header("Content-Range", format!("bytes {start}-{end}/{}", bytes.len()))
            }
            Some(_) => Reply::new(416, Body::Exact(vec![])).header("Content-Range", format!("bytes */{}", bytes.len())),
            None => Reply::new(200, Body::Exact(bytes.to_vec())),
        }
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Serves `handler(request, index of the request)` on 127.0.0.1:0.
    pub async fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, handler, recorded).await;
                });
            }
        });
        Server { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines.next().unwrap_or_default().split_whitespace().nth(1).unwrap_or_default().to_owned();
    let mut request = Request { path, ..Request::default() };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => request.range = value,
            "authorization" => request.authorization = value,
            "accept-encoding" => request.accept_encoding = value,
            _ => {}
        }
    }
    let index = {
        let mut all = recorded.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let reply = handler(&request, index);
    let has = |name: &str| reply.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match &reply.body {
        Body::Exact(bytes) | Body::ThenHang(bytes) if !has("content-length") => {
            out.push_str(&format!("Content-Length: {}\r\n", bytes.len()))
        }
        Body::CutAfter { full_len, .. } if !has("content-length") => {
            out.push_str(&format!("Content-Length: {full_len}\r\n"))
        }
        Body::Trickle { total, .. } if !has("content-length") => {
            out.push_str(&format!("Content-Length: {}\r\n", total.len()))
        }
        Body::Chunked(_) | Body::Endless => out.push_str("Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    out.push_str("\r\n");
    if matches!(reply.body, Body::Silence) {
        std::future::pending::<()>().await;
    }
    stream.write_all(out.as_bytes()).await?;
    match reply.body {
        Body::Exact(bytes) => stream.write_all(&bytes).await?,
        Body::CutAfter { sent, .. } => {
            stream.write_all(&sent).await?;
            stream.flush().await?;
            // Dropping the stream closes the connection mid-body.
        }
        Body::ThenHang(bytes) => {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            std::future::pending::<()>().await;
        }
        Body::Chunked(bytes) => {
            for chunk in bytes.chunks(1000) {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                stream.write_all(chunk).await?;
                stream.write_all(b"\r\n").await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Body::Endless => {
            let chunk = vec![b'x'; 4096];
            // Ends when the client hangs up (the write fails).
            loop {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                stream.write_all(&chunk).await?;
                stream.write_all(b"\r\n").await?;
            }
        }
        Body::Trickle { total, chunk, every } => {
            for piece in total.chunks(chunk) {
                stream.write_all(piece).await?;
                stream.flush().await?;
                tokio::time::sleep(every).await;
            }
        }
        Body::Silence => {}
    }
    stream.flush().await?;
    Ok(())
}
