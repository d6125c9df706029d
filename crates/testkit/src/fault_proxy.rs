//! An HTTP proxy in front of an AWS emulator that answers some JSON-protocol calls with an
//! injected error instead of forwarding them: throttling and 5xx the emulators never send.
//!
//! It can also fail single records of a PutRecords call, as Kinesis does under load: every
//! Nth record is taken out of the request before it is forwarded and reported back as failed
//! (`ProvisionedThroughputExceededException`) in its place in the response.
//!
//! It can also answer every call late by a fixed latency ([`ProxyOptions::latency`]), so a
//! benchmark against the emulators pays an AWS round trip per call as a deployment does,
//! and it counts the calls it answered by operation.
//!
//! It understands just enough HTTP/1.1 for the SDK's requests (headers + Content-Length
//! body, keep-alive); each forwarded request goes upstream on its own connection with
//! `Connection: close` and the whole response is relayed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// What a proxy does to the calls it answers; the default forwards every call at once.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Calls answered with an injected error instead of being forwarded.
    pub fault: Option<Fault>,
    /// Every `partial_every`-th record of the PutRecords calls that get through fails alone.
    pub partial_every: Option<u64>,
    /// How long every call waits before it is forwarded (or answered with its fault): a
    /// round trip to AWS that loopback emulators do not have. Calls on one connection wait
    /// one after the other, as an SDK's requests on one connection do; connections in
    /// parallel wait in parallel.
    pub latency: Duration,
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
    /// Requests answered, by `X-Amz-Target` operation (`PutRecords`, `StartExecution`...).
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, fault: Fault) -> Self {
        Self::start_with(upstream, fault, None).await
    }

    /// [`FaultProxy::start`], and every `partial_every`-th record of the PutRecords calls
    /// that get through fails alone (taken out before forwarding, reported as failed).
    pub async fn start_with(upstream: &str, fault: Fault, partial_every: Option<u64>) -> Self {
        Self::start_with_options(upstream, ProxyOptions { fault: Some(fault), partial_every, ..Default::default() })
            .await
    }

    /// A proxy that injects nothing and forwards every call after `latency`.
    pub async fn with_latency(upstream: &str, latency: Duration) -> Self {
        Self::start_with_options(upstream, ProxyOptions { latency, ..Default::default() }).await
    }

    /// Listens on a free loopback port and forwards to `upstream` as `options` say.
    pub async fn start_with_options(upstream: &str, options: ProxyOptions) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let injected = Arc::new(AtomicU64::new(0));
        let counts = Arc::new(Counts::default());
        let seen = Arc::new(AtomicU64::new(0));
        let (inj, options, all) = (injected.clone(), Arc::new(options), counts.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, options, seen, inj, all) =
                    (upstream.clone(), options.clone(), seen.clone(), inj.clone(), all.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &options, &seen, &inj, &all).await;
                });
            }
        });
        Self { endpoint, injected, counts, task }
    }

    /// Requests answered so far (forwarded or failed).
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Requests answered so far, by `X-Amz-Target` operation (e.g. `StartExecution`; requests
    /// without one under `""`).
    pub fn requests_by_operation(&self) -> BTreeMap<String, u64> {
        self.counts.by_operation.lock().expect("counts").clone()
    }

    /// Requests of `operation` (e.g. `PutRecords`) answered so far.
    pub fn requests_of(&self, operation: &str) -> u64 {
        self.counts.by_operation.lock().expect("counts").get(operation).copied().unwrap_or(0)
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
    options: &ProxyOptions,
    seen: &AtomicU64,
    injected: &AtomicU64,
    counts: &Counts,
) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut read = BufReader::new(read);
    loop {
        // Request line and headers.
        let mut head = Vec::new();
        let mut length = 0usize;
        let mut target = String::new();
        let mut operation = String::new();
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
                let original = line[line.len() - v.len()..].trim();
                operation = original.rsplit('.').next().unwrap_or_default().to_owned();
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
        *counts.by_operation.lock().expect("counts").entry(operation).or_default() += 1;
        if !options.latency.is_zero() {
            tokio::time::sleep(options.latency).await;
        }

        let faulted = options.fault.as_ref().filter(|fault| {
            let op = fault.operation.to_ascii_lowercase();
            target.ends_with(&format!(".{op}")) && seen.fetch_add(1, Ordering::Relaxed) % fault.every == fault.every - 1
        });
        if let Some(fault) = faulted {
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

        let partial = options.partial_every.filter(|_| target.ends_with(".putrecords"));
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An upstream that answers every request `200 ok` and closes, as the proxy expects.
    async fn upstream() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = conn.into_split();
                    let mut read = BufReader::new(read);
                    let mut line = String::new();
                    while read.read_line(&mut line).await.unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let _ = write.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                });
            }
        });
        endpoint
    }

    /// One request with `operation` on `conn`; its response body.
    async fn call(conn: &mut BufReader<TcpStream>, operation: &str) -> String {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: Kinesis_20131202.{operation}\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        conn.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.unwrap();
        String::from_utf8(body).unwrap()
    }

    #[tokio::test]
    async fn every_forwarded_request_is_answered_no_sooner_than_the_latency() {
        let latency = Duration::from_millis(300);
        let proxy = FaultProxy::with_latency(&upstream().await, latency).await;
        let addr = proxy.endpoint().trim_start_matches("http://").to_owned();
        let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
        for operation in ["PutRecords", "PutRecords", "ListShards"] {
            let sent = Instant::now();
            assert_eq!(call(&mut conn, operation).await, "ok", "forwarded and answered");
            assert!(sent.elapsed() >= latency, "{operation} answered after {:?}, before {latency:?}", sent.elapsed());
        }
        assert_eq!(proxy.requests(), 3);
        assert_eq!(proxy.requests_of("PutRecords"), 2);
        assert_eq!(proxy.requests_by_operation().get("ListShards"), Some(&1));
        assert_eq!(proxy.injected(), 0);
    }
}
