//! Amazon S3 as sameday's durable side store: change records too large for Kinesis or SQS
//! (the claim-check), dead letters, and the binlog archive all live under an
//! `s3://bucket/prefix/` location.
//!
//! - Objects are written whole (one PutObject) under deterministic keys, so a replay writes
//!   the same key with the same bytes and a crash between the write and its use leaves
//!   nothing that a retry does not overwrite.
//! - Every object carries the SHA-256 of its body in its metadata (`sha256`), and readers that
//!   hold the expected digest check it, so a truncated or replaced object is an error, never
//!   wrong data.
//! - With a custom endpoint (`[aws] endpoint_url`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`)
//!   requests use path-style addressing, which every S3-compatible store accepts; against AWS
//!   the SDK's default (virtual-hosted style) applies.

use std::fmt;
use std::str::FromStr;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use crate::aws::{classify, describe, AwsConfig, Retry};

/// Metadata key holding the hex SHA-256 of an object's body.
pub const SHA256_METADATA: &str = "sha256";

/// `s3://bucket/prefix/`: where one kind of object lives. The prefix is empty or ends in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// The object key of `name` under this location's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// This location with `sub` appended to the prefix (`dead-letters/reader/`).
    pub fn join(&self, sub: &str) -> Self {
        let sub = sub.trim_matches('/');
        let prefix = if sub.is_empty() { self.prefix.clone() } else { format!("{}{sub}/", self.prefix) };
        Self { bucket: self.bucket.clone(), prefix }
    }

    /// `s3://bucket/key` of one object.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

impl FromStr for S3Location {
    type Err = String;

    /// `s3://bucket`, `s3://bucket/` or `s3://bucket/some/prefix` (a trailing `/` is added).
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| format!("{s:?} is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(format!("{s:?}: bucket name {bucket:?} must be 3 to 63 characters of a-z, 0-9, '.' and '-'"));
        }
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
        Ok(Self { bucket: bucket.to_owned(), prefix })
    }
}

impl<'de> serde::Deserialize<'de> for S3Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A failed S3 call: whether retrying may help, and what happened.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct S3Error {
    pub retry: Retry,
    pub message: String,
}

impl S3Error {
    fn permanent(message: String) -> Self {
        Self { retry: Retry::Permanent, message }
    }
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
}

/// The hex SHA-256 of `body`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

fn hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An S3 client with its addressing chosen for the endpoint (see the module note).
pub async fn client(aws: &AwsConfig) -> Client {
    let sdk = crate::aws::sdk_config(aws).await;
    let custom_endpoint = aws.endpoint_url.is_some()
        || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(custom_endpoint).build();
    Client::from_conf(conf)
}

/// Objects under one location.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    client: Client,
    location: S3Location,
}

impl ObjectStore {
    pub fn new(client: Client, location: S3Location) -> Self {
        Self { client, location }
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// This store's client under another location (same bucket or not).
    pub fn at(&self, location: S3Location) -> Self {
        Self { client: self.client.clone(), location }
    }

    /// Writes `body` under `name` (a key relative to the prefix) and returns the full key and
    /// the body's SHA-256. Overwriting a key with the same bytes is harmless (replays do).
    pub async fn put(&self, name: &str, body: Vec<u8>, content_type: &str) -> Result<(String, String), S3Error> {
        let key = self.location.key(name);
        let sha = sha256_hex(&body);
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .content_type(content_type)
            .metadata(SHA256_METADATA, &sha)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| S3Error {
                retry: classify(&e),
                message: format!("PutObject {}: {}", self.location.url_of(&key), describe(&e)),
            })?;
        Ok((key, sha))
    }

    /// Reads the object at `key` (a full key, as `put` returned it). `Ok(None)` when it does not
    /// exist. With `expected_sha256`, a body with another digest is an error.
    pub async fn get(&self, key: &str, expected_sha256: Option<&str>) -> Result<Option<Vec<u8>>, S3Error> {
        let out = match self.client.get_object().bucket(&self.location.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => return Ok(None),
            Err(e) => {
                return Err(S3Error {
                    retry: classify(&e),
                    message: format!("GetObject {}: {}", self.location.url_of(key), describe(&e)),
                })
            }
        };
        let body = out.body.collect().await.map_err(|e| S3Error {
            retry: Retry::Transient,
            message: format!("GetObject {}: reading the body: {e}", self.location.url_of(key)),
        })?;
        let body = body.into_bytes().to_vec();
        if let Some(expected) = expected_sha256 {
            let got = sha256_hex(&body);
            if got != expected {
                return Err(S3Error::permanent(format!(
                    "{}: body has SHA-256 {got}, the reference says {expected} ({} bytes read); the object was replaced or truncated",
                    self.location.url_of(key),
                    body.len()
                )));
            }
        }
        Ok(Some(body))
    }

    /// Streams the object at `key` (a full key) into the new file `dest` and checks the body
    /// against the SHA-256 in the object's own metadata, which `put` wrote: an object without
    /// it, or with another body, is an error. Returns the size and the digest. For objects
    /// too large to hold in memory (archived binlog files).
    pub async fn download(&self, key: &str, dest: &std::path::Path) -> Result<(u64, String), S3Error> {
        use tokio::io::AsyncWriteExt as _;
        let url = self.location.url_of(key);
        let out = match self.client.get_object().bucket(&self.location.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Err(S3Error::permanent(format!("{url} does not exist")))
            }
            Err(e) => {
                return Err(S3Error { retry: classify(&e), message: format!("GetObject {url}: {}", describe(&e)) })
            }
        };
        let expected = out.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned().ok_or_else(|| {
            S3Error::permanent(format!("{url} has no {SHA256_METADATA} metadata, so its body cannot be checked"))
        })?;
        let local = |e: std::io::Error| S3Error::permanent(format!("writing {url} to {}: {e}", dest.display()));
        let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = out.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| S3Error {
            retry: Retry::Transient,
            message: format!("GetObject {url}: reading the body: {e}"),
        })? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        let got = hex(&hasher.finalize());
        if got != expected {
            return Err(S3Error::permanent(format!(
                "{url}: body has SHA-256 {got}, its metadata says {expected} ({size} bytes read); the object was replaced or truncated"
            )));
        }
        Ok((size, got))
    }

    /// Every object under this location's prefix plus `sub` (which may be empty), in key order.
    pub async fn list(&self, sub: &str) -> Result<Vec<ObjectSummary>, S3Error> {
        let prefix = self.location.key(sub);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.location.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| S3Error {
                    retry: classify(&e),
                    message: format!("ListObjectsV2 {}: {}", self.location.url_of(&prefix), describe(&e)),
                })?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.push(ObjectSummary { key: key.to_owned(), size: o.size().unwrap_or(0).max(0) as u64 });
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes the object at `key` (a full key); deleting a missing key succeeds, as in S3.
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.client.delete_object().bucket(&self.location.bucket).key(key).send().await.map_err(|e| S3Error {
            retry: classify(&e),
            message: format!("DeleteObject {}: {}", self.location.url_of(key), describe(&e)),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print_with_a_normalized_prefix() {
        let l: S3Location = "s3://my-bucket/a/b".parse().unwrap();
        assert_eq!(l, S3Location { bucket: "my-bucket".into(), prefix: "a/b/".into() });
        assert_eq!(l.to_string(), "s3://my-bucket/a/b/");
        assert_eq!(l.key("x.json"), "a/b/x.json");
        assert_eq!(l.join("dead-letters/reader").prefix, "a/b/dead-letters/reader/");
        let bare: S3Location = "s3://my-bucket".parse().unwrap();
        assert_eq!(bare.prefix, "");
        assert_eq!(bare.to_string().parse::<S3Location>().unwrap(), bare);
        assert_eq!("s3://my-bucket/".parse::<S3Location>().unwrap(), bare);
        for bad in ["my-bucket/x", "s3://", "s3://UPPER/x", "s3://a/x", "http://bucket/x"] {
            assert!(bad.parse::<S3Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
