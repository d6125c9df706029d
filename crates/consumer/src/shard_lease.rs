//! Shard leases (in progress).
