//! Which databases, tables and columns the reader emits.
//!
//! Patterns are `db.table` with `*` and `?` wildcards (`app.sched*`, `*.audit`). A table
//! is watched when it matches an include pattern (all tables when there is none) and no
//! exclude pattern. Events of other tables are skipped before their rows are decoded.

use std::collections::HashMap;
use std::sync::Mutex;

use sameday_core::pattern::wildcard;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `db.table` patterns to include; empty means every table.
    #[serde(default)]
    pub include: Vec<String>,
    /// `db.table` patterns to exclude.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `db.table.column` patterns of columns dropped from before/after images.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
}

/// System schemas are never streamed.
const SYSTEM_DBS: &[&str] = &["mysql", "sys", "information_schema", "performance_schema"];

pub struct TableFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    exclude_columns: Vec<String>,
    cache: Mutex<HashMap<(String, String), bool>>,
}

impl TableFilter {
    pub fn new(cfg: &FilterConfig) -> Result<Self, String> {
        for p in cfg.include.iter().chain(&cfg.exclude) {
            if p.split('.').count() != 2 || p.split('.').any(str::is_empty) {
                return Err(format!("filter pattern {p:?} must be DB.TABLE (wildcards * and ? allowed)"));
            }
        }
        for p in &cfg.exclude_columns {
            if p.split('.').count() != 3 || p.split('.').any(str::is_empty) {
                return Err(format!(
                    "exclude_columns pattern {p:?} must be DB.TABLE.COLUMN (wildcards * and ? allowed)"
                ));
            }
        }
        Ok(Self {
            include: cfg.include.clone(),
            exclude: cfg.exclude.clone(),
            exclude_columns: cfg.exclude_columns.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn all() -> Self {
        Self::new(&FilterConfig::default()).expect("the empty filter is valid")
    }

    pub fn matches(&self, db: &str, table: &str) -> bool {
        let key = (db.to_owned(), table.to_owned());
        if let Some(&hit) = self.cache.lock().expect("filter cache poisoned").get(&key) {
            return hit;
        }
        let name = format!("{db}.{table}");
        // System schemas only when an include pattern names the schema literally.
        let system_ok = !SYSTEM_DBS.contains(&db) || self.include.iter().any(|p| p.split('.').next() == Some(db));
        let hit = system_ok
            && (self.include.is_empty() || self.include.iter().any(|p| wildcard(p, &name)))
            && !self.exclude.iter().any(|p| wildcard(p, &name));
        self.cache.lock().expect("filter cache poisoned").insert(key, hit);
        hit
    }

    pub fn column_excluded(&self, db: &str, table: &str, column: &str) -> bool {
        if self.exclude_columns.is_empty() {
            return false;
        }
        let name = format!("{db}.{table}.{column}");
        self.exclude_columns.iter().any(|p| wildcard(p, &name))
    }

    /// Whether a DDL statement issued in `db` may concern a watched table (logged then).
    pub fn ddl_may_touch(&self, db: &str, _statement: &str) -> bool {
        !SYSTEM_DBS.contains(&db)
            && (self.include.is_empty()
                || self.include.iter().any(|p| wildcard(p.split('.').next().unwrap_or("*"), db)))
    }

    /// Include patterns without wildcards, which must name existing tables.
    pub fn literal_includes(&self) -> Vec<(String, String)> {
        self.include
            .iter()
            .filter(|p| !p.contains(['*', '?']))
            .filter_map(|p| p.split_once('.'))
            .map(|(d, t)| (d.to_owned(), t.to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude_and_system_schemas() {
        let f = TableFilter::new(&FilterConfig {
            include: vec!["app.*".into()],
            exclude: vec!["app.tmp_*".into()],
            exclude_columns: vec!["app.users.password".into()],
        })
        .unwrap();
        assert!(f.matches("app", "schedules"));
        assert!(!f.matches("app", "tmp_x"));
        assert!(!f.matches("other", "schedules"));
        assert!(!TableFilter::all().matches("mysql", "user"));
        let sys = TableFilter::new(&FilterConfig { include: vec!["mysql.*".into()], ..Default::default() }).unwrap();
        assert!(sys.matches("mysql", "foo"));
        assert!(f.column_excluded("app", "users", "password"));
        assert!(!f.column_excluded("app", "users", "email"));
    }

    #[test]
    fn bad_patterns_are_rejected_with_the_pattern() {
        let err =
            TableFilter::new(&FilterConfig { include: vec!["schedules".into()], ..Default::default() }).err().unwrap();
        assert!(err.contains("\"schedules\""), "{err}");
    }
}
