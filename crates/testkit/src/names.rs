//! Unique resource names for tests that share one server or emulator.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest name [`unique`] returns.
pub const MAX_LEN: usize = 60;

/// Length of the random part of a name.
const RANDOM_LEN: usize = 5;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name that no other call returns, in this process or any other running at the same
/// time: `<prefix>_<pid>_<counter>_<random>` (pid and counter in base 36).
///
/// Guarantees: only `[a-z0-9_]`, starts with a letter, 3..=[`MAX_LEN`] characters, so it
/// is valid unquoted as a MySQL/MariaDB database or table name (no case folding issues),
/// a Kinesis stream name, a DynamoDB table name and an SQS queue name. The prefix is
/// lowercased, other characters become `_`, and it is shortened if needed so the unique
/// suffix always fits.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{}_{}_{}", base36(u64::from(std::process::id())), base36(n), random_part());
    let mut head: String = prefix
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if !head.starts_with(|c: char| c.is_ascii_lowercase()) {
        head.insert(0, 't');
    }
    head.truncate(MAX_LEN - suffix.len());
    head + &suffix
}

/// `RANDOM_LEN` base-36 characters from the process-random `RandomState` keys, mixed with
/// the clock and the counter (so two processes with the same pid, e.g. in different
/// containers writing to one server, still differ).
fn random_part() -> String {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(nanos);
    h.write_u64(COUNTER.load(Ordering::Relaxed));
    let mut s = base36(h.finish());
    while s.len() < RANDOM_LEN {
        s.insert(0, '0');
    }
    s[s.len() - RANDOM_LEN..].to_string()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_valid() {
        let long = "X".repeat(200);
        let mut seen = HashSet::new();
        for prefix in ["orders", "", "9lives", "Mixed-Case.name", long.as_str()] {
            for _ in 0..1000 {
                let name = unique(prefix);
                assert!(name.len() >= 3 && name.len() <= MAX_LEN, "{name}");
                assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
                assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
                assert!(seen.insert(name.clone()), "duplicate {name}");
            }
        }
        assert!(unique("orders").starts_with("orders_"));
        assert!(unique("Mixed-Case.name").starts_with("mixed_case_name_"));
    }
}
