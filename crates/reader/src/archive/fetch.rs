//! Replays from the archive: archived binlog files are downloaded (streamed to a temporary
//! directory, SHA-256 checked against the object's metadata) under their own file names, and
//! the replay reads them through the same file source as `--binlog-file` on local files, so
//! positions and event ids are the live stream's.
//!
//! A range (`--archive LOCATION --from FILE:POS [--to FILE:POS]`) must be whole: a file of
//! the series missing from the archive between the two ends is an error naming it, never
//! skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sameday_core::aws::AwsConfig;
use sameday_core::s3::{ObjectStore, S3Location};
use sameday_core::BinlogPosition;

use super::catalog::{describe_ranges, list_archive, newest_of, BinlogName};
use super::ArchiveError;

/// Downloaded binlog files, in replay order; the directory is removed when this is dropped.
pub struct FetchedFiles {
    _dir: tempfile::TempDir,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// `s3://bucket/prefix/mysql-bin.000042` as the location it is in and the file name.
pub fn parse_object_url(url: &str) -> Result<(S3Location, String), String> {
    let (dir, name) = url
        .rsplit_once('/')
        .filter(|(d, _)| d.contains("s3://") && d.len() > 5)
        .ok_or_else(|| format!("{url:?} is not an s3://bucket/prefix/FILE URL of an archived binlog file"))?;
    if BinlogName::parse(name).is_none() {
        return Err(format!("{url:?} does not end in a binlog file name (like mysql-bin.000042)"));
    }
    let location = format!("{dir}/").parse::<S3Location>()?;
    Ok((location, name.to_owned()))
}

/// Downloads each `s3://.../FILE` object, in the order given.
pub async fn fetch_objects(aws: &AwsConfig, urls: &[String]) -> Result<FetchedFiles, ArchiveError> {
    let client = sameday_core::s3::client(aws).await;
    let mut objects = Vec::new();
    for url in urls {
        let (location, name) = parse_object_url(url).map_err(ArchiveError::Fetch)?;
        objects.push((ObjectStore::new(client.clone(), location), name));
    }
    download(&objects).await
}

/// Downloads the archived files from `from`'s file to `to`'s (or the newest archived file),
/// refusing a range with a file missing.
pub async fn fetch_range(
    aws: &AwsConfig,
    location: &S3Location,
    from: &BinlogPosition,
    to: Option<&BinlogPosition>,
) -> Result<FetchedFiles, ArchiveError> {
    let store = ObjectStore::new(sameday_core::s3::client(aws).await, location.clone());
    let archived = list_archive(&store).await?;
    let names = range_names(&archived, &from.file, to.map(|t| t.file.as_str()))
        .map_err(|e| ArchiveError::Fetch(format!("{location}: {e}")))?;
    let objects: Vec<(ObjectStore, String)> = names.into_iter().map(|n| (store.clone(), n)).collect();
    download(&objects).await
}

/// The names from `first` to `last` (default: the newest archived of the series), all of
/// which must be archived.
fn range_names(archived: &BTreeMap<String, u64>, first: &str, last: Option<&str>) -> Result<Vec<String>, String> {
    let start = BinlogName::parse(first).ok_or_else(|| format!("--from names {first:?}, not a binlog file"))?;
    let last = match last {
        Some(l) => l.to_owned(),
        None => newest_of(archived, first).ok_or_else(|| format!("no archived file of the series {}", start.base))?,
    };
    let end = BinlogName::parse(&last).ok_or_else(|| format!("--to names {last:?}, not a binlog file"))?;
    if end.base != start.base || end.number < start.number {
        return Err(format!("--to {last} does not come after --from {first}"));
    }
    let names: Vec<String> = (start.number..=end.number).map(|n| start.with_number(n)).collect();
    let absent: Vec<String> = names.iter().filter(|n| !archived.contains_key(*n)).cloned().collect();
    if !absent.is_empty() {
        return Err(format!(
            "{} not in the archive (never archived, or purged before the archive copied it); replay what is there \
             with narrower --from/--to, and repair the rest with `sameday reconcile --fix`",
            describe_ranges(&absent)
        ));
    }
    Ok(names)
}

async fn download(objects: &[(ObjectStore, String)]) -> Result<FetchedFiles, ArchiveError> {
    let dir = tempfile::Builder::new()
        .prefix("sameday-archive-")
        .tempdir()
        .map_err(|e| ArchiveError::Fetch(format!("cannot create a temporary directory: {e} (set TMPDIR)")))?;
    let mut files = Vec::new();
    let mut bytes = 0;
    for (store, name) in objects {
        let path = dir.path().join(name);
        if files.contains(&path) {
            return Err(ArchiveError::Fetch(format!("{name} is given twice")));
        }
        let (size, sha256) = store.download(&store.location().key(name), &path).await?;
        tracing::info!(object = %store.location().url_of(&store.location().key(name)), bytes = size, %sha256, "archived binlog file fetched and verified");
        bytes += size;
        files.push(path);
    }
    Ok(FetchedFiles { _dir: dir, files, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_split_into_location_and_file_name() {
        let (loc, name) = parse_object_url("s3://binlogs-bucket/app/db1/mysql-bin.000042").unwrap();
        assert_eq!(
            (loc.bucket.as_str(), loc.prefix.as_str(), name.as_str()),
            ("binlogs-bucket", "app/db1/", "mysql-bin.000042")
        );
        assert_eq!(parse_object_url("s3://binlogs-bucket/mysql-bin.000001").unwrap().0.prefix, "");
        assert!(parse_object_url("s3://binlogs-bucket/app/").is_err());
        assert!(parse_object_url("mysql-bin.000001").is_err());
    }

    #[test]
    fn a_range_lists_every_file_and_refuses_holes() {
        let archived: BTreeMap<String, u64> =
            ["mysql-bin.000002", "mysql-bin.000003", "mysql-bin.000005"].iter().map(|n| ((*n).to_owned(), 1)).collect();
        assert_eq!(range_names(&archived, "mysql-bin.000002", Some("mysql-bin.000003")).unwrap().len(), 2);
        let err = range_names(&archived, "mysql-bin.000002", None).unwrap_err();
        assert!(err.starts_with("mysql-bin.000004 not in the archive"), "{err}");
        assert!(range_names(&archived, "mysql-bin.000003", Some("mysql-bin.000002")).is_err());
    }
}
