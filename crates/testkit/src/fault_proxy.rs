//! An HTTP proxy in front of an AWS emulator that answers some JSON-protocol calls with an
//! injected error instead of forwarding them: throttling and 5xx the emulators never send.
//!
//! It can also fail single records of a PutRecords call, as Kinesis does under load: every
//! Nth record is taken out of the request before it is forwarded and reported back as failed
//! (`ProvisionedThroughputExceededException`) in its place in the response.
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
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    /// Requests answered (forwarded or failed).
    requests: AtomicU64,
    /// PutRecords records failed one by one.
    failed_records: AtomicU64,
    /// PutRecords records seen, for `partial_every`.
    records_seen: AtomicU64,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, fault: Fault) -> Self {
        Self::start_with(upstream, fault, None).await
    }

    /// [`FaultProxy::start`], and every `partial_every`-th record of the PutRecords calls
    /// that get through fails alone (taken out before forwarding, reported as failed).
    pub async fn start_with(upstream: &str, fault: Fault, partial_every: Option<u64>) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let injected = Arc::new(AtomicU64::new(0));
        let counts = Arc::new(Counts::default());
        let seen = Arc::new(AtomicU64::new(0));
        let (inj, fault, all) = (injected.clone(), Arc::new(fault), counts.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, fault, seen, inj, all) =
                    (upstream.clone(), fault.clone(), seen.clone(), inj.clone(), all.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &fault, &seen, &inj, &all, partial_every).await;
                });
            }
        });
        Self { endpoint, injected, counts, task }
    }

    /// Requests answered so far (forwarded or failed).
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// PutRecords records failed one by one so far.
    pub fn failed_records(&self) -> u64 {
        self.counts.failed_records.load(Ordering::Relaxed)
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
    counts: &Counts,
    partial_every: Option<u64>,
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
        counts.requests.fetch_add(1, Ordering::Relaxed);

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

        let partial = partial_every.filter(|_| target.ends_with(".putrecords"));
        let (body, failed) = match partial {
            Some(every) => drop_records(&body, every, counts),
            None => (body, Vec::new()),
        };
        if !failed.is_empty() && body.is_empty() {
            // Every record of the call failed: nothing to forward.
            let results: Vec<serde_json::Value> = failed.iter().map(|_| failed_entry()).collect();
            let payload = serde_json::json!({"FailedRecordCount": failed.len(), "Records": results}).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{payload}",
                payload.len()
            );
            write.write_all(response.as_bytes()).await?;
            continue;
        }
        let head = with_length(&head, body.len());
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(&head).await?;
        up.write_all(b"connection: close\r\n\r\n").await?;
        up.write_all(&body).await?;
        let mut response = Vec::new();
        up.read_to_end(&mut response).await?;
        if !failed.is_empty() {
            response = with_failed_records(&response, &failed);
        }
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

/// `head` with its content-length set to `length`.
fn with_length(head: &[u8], length: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("content-length: {length}\r\n"));
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// A PutRecords body without every `every`-th record (counted across calls), and the
/// indexes taken out.
fn drop_records(body: &[u8], every: u64, counts: &Counts) -> (Vec<u8>, Vec<usize>) {
    let Ok(mut request) = serde_json::from_slice::<serde_json::Value>(body) else { return (body.to_vec(), Vec::new()) };
    let Some(records) = request.get_mut("Records").and_then(|r| r.as_array_mut()) else {
        return (body.to_vec(), Vec::new());
    };
    let mut failed = Vec::new();
    let mut kept = Vec::new();
    for (i, r) in records.drain(..).enumerate() {
        if counts.records_seen.fetch_add(1, Ordering::Relaxed) % every == every - 1 {
            failed.push((i, r));
        } else {
            kept.push(r);
        }
    }
    *records = kept;
    let all_failed = records.is_empty();
    let failed: Vec<usize> = failed.into_iter().map(|(i, _)| i).collect();
    counts.failed_records.fetch_add(failed.len() as u64, Ordering::Relaxed);
    // An empty body tells the caller that nothing is left to forward.
    let body = if all_failed { Vec::new() } else { serde_json::to_vec(&request).expect("JSON") };
    (body, failed)
}

fn failed_entry() -> serde_json::Value {
    serde_json::json!({
        "ErrorCode": "ProvisionedThroughputExceededException",
        "ErrorMessage": "Rate exceeded for shard (injected by sameday's fault proxy)"
    })
}

/// The upstream's PutRecords response with a failed entry at each index of `failed`.
fn with_failed_records(response: &[u8], failed: &[usize]) -> Vec<u8> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(response.len());
    let (head, body) = response.split_at(split);
    let Ok(mut out) = serde_json::from_slice::<serde_json::Value>(body) else { return response.to_vec() };
    let mut results: std::collections::VecDeque<serde_json::Value> =
        out["Records"].as_array().cloned().unwrap_or_default().into();
    let total = results.len() + failed.len();
    let mut merged = Vec::with_capacity(total);
    for i in 0..total {
        if failed.contains(&i) {
            merged.push(failed_entry());
        } else if let Some(r) = results.pop_front() {
            merged.push(r);
        }
    }
    let already = out["FailedRecordCount"].as_u64().unwrap_or(0);
    out["FailedRecordCount"] = (already + failed.len() as u64).into();
    out["Records"] = merged.into();
    let body = serde_json::to_vec(&out).expect("JSON");
    let mut bytes = with_length(&head[..head.len() - 2], body.len());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&body);
    bytes
}
