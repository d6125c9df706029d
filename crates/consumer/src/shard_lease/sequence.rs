//! Kinesis sequence numbers and shard checkpoints, ordered numerically.

use super::*;

/// A Kinesis sequence number: a decimal integer of up to [`MAX_SEQUENCE_DIGITS`] digits,
/// ordered numerically (`9 < 10`), stored without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Zero-padded to [`MAX_SEQUENCE_DIGITS`], so byte order equals numeric order.
    fn sortable(&self) -> String {
        format!("{:0>width$}", self.0, width = MAX_SEQUENCE_DIGITS)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SequenceNumber {
    type Err = LeaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LeaseError::InvalidSequence { value: s.to_owned(), why: "not a decimal integer" });
        }
        let digits = s.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.len() > MAX_SEQUENCE_DIGITS {
            return Err(LeaseError::InvalidSequence { value: s.to_owned(), why: "more than 129 digits" });
        }
        Ok(Self(digits.to_owned()))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer number is larger; equal lengths compare by digits.
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a shard's reader resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardCheckpoint {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// Only records written after the first read (new deployments that skip history).
    Latest,
    /// After this record: everything up to it reached SQS.
    Sequence(SequenceNumber),
    /// The shard was closed by a reshard and fully read; its children may start.
    ShardEnd,
}

impl ShardCheckpoint {
    /// `0` for the starting points, `1<padded sequence>`, `2` for the end: byte order is
    /// progress order, so DynamoDB can compare it in a condition.
    pub(super) fn sortable(&self) -> String {
        match self {
            Self::TrimHorizon | Self::Latest => "0".into(),
            Self::Sequence(seq) => format!("1{}", seq.sortable()),
            Self::ShardEnd => "2".into(),
        }
    }
}

impl FromStr for ShardCheckpoint {
    type Err = LeaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "LATEST" => Ok(Self::Latest),
            "SHARD_END" => Ok(Self::ShardEnd),
            seq => seq.parse().map(Self::Sequence),
        }
    }
}

impl fmt::Display for ShardCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrimHorizon => f.write_str("TRIM_HORIZON"),
            Self::Latest => f.write_str("LATEST"),
            Self::Sequence(seq) => seq.fmt(f),
            Self::ShardEnd => f.write_str("SHARD_END"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        s.parse().unwrap()
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert!(seq("9") < seq("10"));
        assert!(seq("99") < seq("100"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("000").to_string(), "0");
        // Real Kinesis sequence numbers have 56 digits, beyond u128.
        let a = seq("49590338271490256608559692538361571095921575989136588898");
        let b = seq("49590338271490256608559692540925702759324208523137515618");
        assert!(a < b);
        assert!(seq("340282366920938463463374607431768211455") < seq("340282366920938463463374607431768211456"));
        let max = "9".repeat(MAX_SEQUENCE_DIGITS);
        assert!(seq(&max) > a);
        assert!(format!("1{max}").parse::<SequenceNumber>().is_err());
        assert!("".parse::<SequenceNumber>().is_err());
        assert!("12a".parse::<SequenceNumber>().is_err());
        assert!("-1".parse::<SequenceNumber>().is_err());

        // The stored sortable form orders like the numbers, sentinels around them.
        let ordered = ["TRIM_HORIZON", "0", "9", "10", a.as_str(), b.as_str(), max.as_str(), "SHARD_END"];
        let forms: Vec<String> = ordered.iter().map(|s| s.parse::<ShardCheckpoint>().unwrap().sortable()).collect();
        assert!(forms.windows(2).all(|w| w[0] < w[1]), "{forms:?}");
        for s in ordered {
            assert_eq!(s.parse::<ShardCheckpoint>().unwrap().to_string(), s);
        }
    }
}
