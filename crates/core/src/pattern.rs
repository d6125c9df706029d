//! `db.table` patterns with `*` (any run of characters) and `?` (one character), as used
//! by the reader's filters and the consumer's routes.

/// Glob match with `*` (any run) and `?` (one char); case-sensitive like table names on Linux.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_tables() {
        assert!(wildcard("app.sched*", "app.schedules"));
        assert!(wildcard("*.audit", "billing.audit"));
        assert!(wildcard("a?p.t", "app.t"));
        assert!(!wildcard("app.sched*", "app.users"));
        assert!(wildcard("*", ""));
    }
}
