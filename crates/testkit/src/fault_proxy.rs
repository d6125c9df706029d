//! An HTTP proxy in front of an AWS emulator that answers some JSON-protocol calls with an
//! injected error instead of forwarding them: throttling and 5xx the emulators never send.
//!
//! It understands just enough HTTP/1.1 for the SDK's requests (headers + Content-Length
//! body, keep-alive); each forwarded request goes upstream on its own connection with
//! `Connection: close` and the whole response is relayed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Which calls fail and how.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `X-Amz-Target` suffix, e.g. `StartExecution`.
    pub operation: String,
    /// Fails calls number `every`, 2*`every`, ... of that operation (1 = all).
    pub every: u64,
    /// HTTP status and the error `__type`, e.g. 400 / `ThrottlingException`.
    pub status: u16,
    pub error_type: String,
}

pub struct FaultProxy {
    endpoint: String,
    injected: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, fault: Fault) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let injected = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let (inj, fault) = (injected.clone(), Arc::new(fault));
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, fault, seen, inj) = (upstream.clone(), fault.clone(), seen.clone(), inj.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &fault, &seen, &inj).await;
                });
            }
        });
        Self { endpoint, injected, task }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many calls were answered with the fault.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    conn: TcpStream,
    upstream: &str,
    fault: &Fault,
    seen: &AtomicU64,
    injected: &AtomicU64,
) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut read = BufReader::new(read);
    loop {
        // Request line and headers.
        let mut head = Vec::new();
        let mut length = 0usize;
        let mut target = String::new();
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if let Some(v) = lower.strip_prefix("x-amz-target:") {
                target = v.trim().to_owned();
            }
            let end = line == "\r\n";
            if !lower.starts_with("connection:") && !end {
                head.extend_from_slice(line.as_bytes());
            }
            if end {
                break;
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await?;

        let op = fault.operation.to_ascii_lowercase();
        if target.ends_with(&format!(".{op}")) && seen.fetch_add(1, Ordering::Relaxed) % fault.every == fault.every - 1
        {
            injected.fetch_add(1, Ordering::Relaxed);
            let payload =
                format!(r#"{{"__type":"{}","message":"injected by sameday's fault proxy"}}"#, fault.error_type);
            let response = format!(
                "HTTP/1.1 {} Injected\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-errortype: {}\r\ncontent-length: {}\r\n\r\n{}",
                fault.status,
                fault.error_type,
                payload.len(),
                payload
            );
            write.write_all(response.as_bytes()).await?;
            continue;
        }

        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(&head).await?;
        up.write_all(b"connection: close\r\n\r\n").await?;
        up.write_all(&body).await?;
        let mut response = Vec::new();
        up.read_to_end(&mut response).await?;
        // Keep the client's connection open: drop the upstream's `Connection: close`.
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(response.len());
        let (h, b) = response.split_at(split);
        let headers: String = String::from_utf8_lossy(h)
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        write.write_all(headers.trim_end().as_bytes()).await?;
        write.write_all(b"\r\n\r\n").await?;
        write.write_all(b).await?;
    }
}
