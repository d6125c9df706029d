//! Loading a daemon's TOML config file with environment overrides.
//!
//! `SAMEDAY__SECTION__KEY=value` overrides `[section] key = value` (any depth, `__`
//! separates levels), so an ECS task definition can set or replace everything, secrets
//! included. Values are read as TOML scalars (`5`, `true`) and fall back to strings.
//! Unknown keys are rejected by the target struct (`deny_unknown_fields`) with their name.

use std::path::Path;

use serde::de::DeserializeOwned;

pub const ENV_PREFIX: &str = "SAMEDAY__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// Reads `path` (or starts empty when `None`), applies the environment overrides from
/// `vars`, and deserializes into `T`.
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let shown = path.map(|p| p.display().to_string()).unwrap_or_else(|| "(environment only)".into());
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: shown.clone(), source })?,
        None => String::new(),
    };
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Invalid { path: shown.clone(), message: e.to_string() })?;
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else { continue };
        let keys: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid {
                path: shown,
                message: format!("environment variable {k} has an empty key part"),
            });
        }
        set_path(&mut doc, &keys, scalar(&v));
    }
    T::deserialize(toml::Value::Table(doc)).map_err(|e| ConfigError::Invalid { path: shown, message: e.to_string() })
}

fn scalar(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = v.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if v.starts_with('[') {
        if let Ok(t) = format!("x = {v}").parse::<toml::Table>() {
            if let Some(x) = t.get("x") {
                return x.clone();
            }
        }
    }
    toml::Value::String(v.to_owned())
}

fn set_path(doc: &mut toml::Table, keys: &[String], value: toml::Value) {
    let (last, parents) = keys.split_last().expect("at least one key");
    let mut table = doc;
    for k in parents {
        let entry = table.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("just made a table");
    }
    table.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        source: Source,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Source {
        host: String,
        port: u16,
        #[serde(default)]
        tables: Vec<String>,
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[source]\nhost = \"db\"\nport = 3306\n").unwrap();
        let cfg: Cfg = load(
            Some(&p),
            [
                ("SAMEDAY__SOURCE__PORT".to_owned(), "3307".to_owned()),
                ("SAMEDAY__SOURCE__TABLES".to_owned(), "[\"a.b\"]".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(cfg.source, Source { host: "db".into(), port: 3307, tables: vec!["a.b".into()] });
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[source]\nhost = \"db\"\nport = 3306\nprot = 1\n").unwrap();
        let err = load::<Cfg>(Some(&p), []).unwrap_err().to_string();
        assert!(err.contains("prot") && err.contains("c.toml"), "{err}");
        let err = load::<Cfg>(Some(&p.with_extension("missing")), []).unwrap_err().to_string();
        assert!(err.contains("cannot read config file"), "{err}");
    }
}
