//! Which SQS queues a change goes to: routes by table pattern, optionally narrowed by a
//! schedule rule's same-day filter (only changes that can affect the current
//! materialization window are forwarded; later days are skipped and counted).

use sameday_core::envelope::ChangeEnvelope;
use sameday_core::pattern::wildcard;
use sameday_core::rule::ScheduleRule;
use sameday_core::window::affects_window;
use serde::Deserialize;

/// `[[route]]` in the consumer's config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `db.table` patterns (`*`, `?` wildcards).
    pub tables: Vec<String>,
    /// Queue names (or URLs) the matching changes go to.
    pub queues: Vec<String>,
    /// Name of a `[[rule]]`: forward only changes that can affect its current window.
    #[serde(default)]
    pub same_day_rule: Option<String>,
}

/// What to do with one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send to these queue indexes (into the route set's queue list), in this order.
    Send(Vec<usize>),
    /// No route takes it, or the same-day filter found it due on a later day.
    Skip { reason: &'static str },
    /// The change cannot be judged (a due value that does not parse): dead-letter it.
    Invalid(String),
}

/// Routes resolved against a list of queues and rules.
pub(crate) struct Routes {
    routes: Vec<(RouteConfig, Vec<usize>, Option<ScheduleRule>)>,
}

impl Routes {
    /// `queue_index(name)` maps a queue name to its index in the consumer's queue list.
    pub(crate) fn new(
        routes: &[RouteConfig],
        rules: &[ScheduleRule],
        mut queue_index: impl FnMut(&str) -> usize,
    ) -> Result<Self, String> {
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if r.tables.is_empty() || r.queues.is_empty() {
                return Err(format!("route[{i}]: tables and queues must not be empty"));
            }
            for t in &r.tables {
                if t.split('.').count() != 2 {
                    return Err(format!("route[{i}].tables: {t:?} must be DB.TABLE (wildcards * and ?)"));
                }
            }
            let rule =
                match &r.same_day_rule {
                    Some(name) => Some(rules.iter().find(|x| &x.name == name).cloned().ok_or_else(|| {
                        format!("route[{i}].same_day_rule names {name:?}, which no [[rule]] defines")
                    })?),
                    None => None,
                };
            let queues = r.queues.iter().map(|q| queue_index(q)).collect();
            out.push((r.clone(), queues, rule));
        }
        Ok(Self { routes: out })
    }

    /// Decides where `env` goes at time `now`.
    pub(crate) fn decide(&self, env: &ChangeEnvelope, now: jiff::Timestamp) -> Decision {
        let name = format!("{}.{}", env.db, env.table);
        let mut targets: Vec<usize> = Vec::new();
        let mut matched = false;
        for (cfg, queues, rule) in &self.routes {
            if !cfg.tables.iter().any(|p| wildcard(p, &name)) {
                continue;
            }
            matched = true;
            // A claim-check pointer carries no images to judge: it goes on, and the worker
            // judges the full change it reads from S3.
            if let Some(rule) = rule.as_ref().filter(|_| env.claim_check.is_none()) {
                match affects_window(rule, env.before.as_ref(), env.after.as_ref(), now) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return Decision::Invalid(e.to_string()),
                }
            }
            for &q in queues {
                if !targets.contains(&q) {
                    targets.push(q);
                }
            }
        }
        match (matched, targets.is_empty()) {
            (false, _) => Decision::Skip { reason: "no route" },
            (true, true) => Decision::Skip { reason: "not in the current window" },
            (true, false) => Decision::Send(targets),
        }
    }
}
