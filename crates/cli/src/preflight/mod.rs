//! `sameday check`: the preflight of any daemon's config file.
//!
//! Each check adds one line per problem, naming the thing and the fix. A blocking problem
//! (ERROR) means the daemon would fail, lose changes or loop on a message; it makes `check`
//! exit with 2. A WARNING is a risk the operator should know about. Checks carry on after a
//! failure so that one run lists everything that is wrong.

mod archive;
mod aws;
mod consumer;
mod reader;
mod worker;

use std::path::Path;
use std::process::ExitCode;

pub(crate) use archive::archive;
pub(crate) use consumer::consumer;
pub(crate) use reader::reader;
pub(crate) use sameday_mysql::Problem;
pub(crate) use worker::worker;

/// Exit code when a blocking problem was found.
const BLOCKING_EXIT: u8 = 2;

/// Which daemon a config file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    Reader,
    Consumer,
    /// The worker and the nightly batch share one config file.
    Worker,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Reader => "reader",
            Kind::Consumer => "consumer",
            Kind::Worker => "worker",
        })
    }
}

/// Tells the daemon from the file's top-level sections (after environment overrides).
pub(crate) fn detect_kind(path: &Path) -> anyhow::Result<Kind> {
    let doc: serde_json::Map<String, serde_json::Value> =
        sameday_core::config_file::load(Some(path), std::env::vars())?;
    kind_of(doc.keys().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("config file {}: {e}; pass --kind reader|consumer|worker", path.display()))
}

fn kind_of<'a>(sections: impl IntoIterator<Item = &'a str>) -> Result<Kind, String> {
    let sections: Vec<&str> = sections.into_iter().collect();
    let has = |s: &str| sections.contains(&s);
    if has("source") && has("kinesis") && has("checkpoint") {
        Ok(Kind::Reader)
    } else if has("leases") {
        Ok(Kind::Consumer)
    } else if has("rule") && (has("sqs") || has("nightly")) {
        Ok(Kind::Worker)
    } else {
        Err(format!(
            "cannot tell which daemon it configures (sections: {}; a reader has [source], [kinesis] and \
             [checkpoint], a consumer [leases], a worker [[rule]] with [sqs] or [nightly])",
            sections.join(", ")
        ))
    }
}

/// Prints the notes (facts worth seeing, not problems), the problems and a verdict; the exit
/// code is non-zero on a blocking problem.
pub(crate) fn report(kind: Kind, path: &Path, problems: &[Problem], notes: &[String]) -> ExitCode {
    println!("checking the {kind} config {}", path.display());
    for n in notes {
        println!("INFO: {n}");
    }
    for p in problems {
        println!("{p}");
    }
    let blocking = problems.iter().filter(|p| p.blocking).count();
    let warnings = problems.len() - blocking;
    if blocking > 0 {
        println!("FAILED: {blocking} blocking problem(s), {warnings} Problem::warning(s)");
        ExitCode::from(BLOCKING_EXIT)
    } else {
        println!("OK ({warnings} warning(s))");
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_follows_the_sections() {
        assert_eq!(kind_of(["source", "kinesis", "checkpoint", "aws"]), Ok(Kind::Reader));
        assert_eq!(kind_of(["kinesis", "leases", "route", "dead_letter"]), Ok(Kind::Consumer));
        assert_eq!(kind_of(["sqs", "rule"]), Ok(Kind::Worker));
        assert_eq!(kind_of(["rule", "nightly"]), Ok(Kind::Worker));
        let err = kind_of(["rule", "metrics"]).unwrap_err();
        assert!(err.contains("sections: rule, metrics"), "{err}");
    }

    #[test]
    fn the_example_configs_are_recognised() {
        for (text, kind) in [
            (include_str!("../../../../deploy/reader.example.toml"), Kind::Reader),
            (include_str!("../../../../deploy/consumer.example.toml"), Kind::Consumer),
            (include_str!("../../../../deploy/worker.example.toml"), Kind::Worker),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.toml");
            std::fs::write(&path, text).unwrap();
            let doc: serde_json::Map<String, serde_json::Value> =
                sameday_core::config_file::load(Some(&path), std::iter::empty()).unwrap();
            assert_eq!(kind_of(doc.keys().map(String::as_str)), Ok(kind));
        }
    }
}
