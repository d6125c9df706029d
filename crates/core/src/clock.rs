//! Wall-clock time in milliseconds since the Unix epoch: the unit of every timestamp sameday
//! stores or sends (checkpoints, leases, envelopes, dead letters). Decision logic takes its
//! clock as a parameter instead (`window`, the worker's `effects`), so tests can set it.

/// Now, in ms since the epoch (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
