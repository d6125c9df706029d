//! Kinesis sequence numbers and shard checkpoints, ordered numerically.

use super::*;

/// A position in a shard: a Kinesis sequence number (a decimal integer of up to
/// [`MAX_SEQUENCE_DIGITS`] digits, ordered numerically, `9 < 10`, stored without leading
/// zeros), and for a user record inside a KPL aggregated record its index there (the KCL's
/// sub-sequence number). Without a sub-sequence it stands for the whole record, which comes
/// after each of its user records. Written `SEQ` or `SEQ:SUB`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber {
    digits: String,
    sub: Option<u64>,
}

impl SequenceNumber {
    /// Zero-padded to [`MAX_SEQUENCE_DIGITS`] (then `.SUB` zero-padded, or `~` for the whole
    /// record), so byte order equals position order.
    fn sortable(&self) -> String {
        match self.sub {
            None => format!("{:0>width$}~", self.digits, width = MAX_SEQUENCE_DIGITS),
            Some(sub) => format!("{:0>width$}.{sub:020}", self.digits, width = MAX_SEQUENCE_DIGITS),
        }
    }

    /// The text as stored (`SEQ` or `SEQ:SUB`).
    pub(crate) fn as_str(&self) -> String {
        self.to_string()
    }

    /// User record `sub` of the (aggregated) record at this sequence number.
    pub(crate) fn with_sub(&self, sub: u64) -> Self {
        Self { digits: self.digits.clone(), sub: Some(sub) }
    }

    /// The index of the user record inside an aggregated record, if this names one.
    pub(crate) fn sub(&self) -> Option<u64> {
        self.sub
    }

    /// The Kinesis record this position is in (without the sub-sequence).
    pub(crate) fn record(&self) -> Self {
        Self { digits: self.digits.clone(), sub: None }
    }

    /// The Kinesis sequence number alone, as the API takes it.
    pub(crate) fn kinesis(&self) -> &str {
        &self.digits
    }
}

impl FromStr for SequenceNumber {
    type Err = LeaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, sub) = match s.split_once(':') {
            Some((seq, sub)) => {
                let sub = sub.parse::<u64>().map_err(|_| LeaseError::InvalidSequence {
                    value: s.to_owned(),
                    why: "the sub-sequence after ':' is not a decimal integer",
                })?;
                (seq, Some(sub))
            }
            None => (s, None),
        };
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LeaseError::InvalidSequence { value: s.to_owned(), why: "not a decimal integer" });
        }
        let digits = seq.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.len() > MAX_SEQUENCE_DIGITS {
            return Err(LeaseError::InvalidSequence { value: s.to_owned(), why: "more than 129 digits" });
        }
        Ok(Self { digits: digits.to_owned(), sub })
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits)?;
        match self.sub {
            Some(sub) => write!(f, ":{sub}"),
            None => Ok(()),
        }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer number is larger; equal lengths compare by digits.
        // Inside one record, user records in order, and the whole record after them all.
        self.digits
            .len()
            .cmp(&other.digits.len())
            .then_with(|| self.digits.cmp(&other.digits))
            .then_with(|| self.sub.unwrap_or(u64::MAX).cmp(&other.sub.unwrap_or(u64::MAX)))
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
        assert!("12:x".parse::<SequenceNumber>().is_err());

        // User records of an aggregated record come in order, the whole record after them.
        assert!(seq("10:0") < seq("10:1") && seq("10:1") < seq("10") && seq("10") < seq("11:0"));
        assert!(seq("9:5") < seq("10:0"));
        assert_eq!(seq("010:3").to_string(), "10:3");
        assert_eq!((seq("10:3").sub(), seq("10:3").record(), seq("10:3").kinesis()), (Some(3), seq("10"), "10"));

        // The stored sortable form orders like the numbers, sentinels around them.
        let (a, b) = (a.as_str(), b.as_str());
        let ordered = ["TRIM_HORIZON", "0", "9:0", "9:11", "9", "10", &a, &b, &max, "SHARD_END"];
        let forms: Vec<String> = ordered.iter().map(|s| s.parse::<ShardCheckpoint>().unwrap().sortable()).collect();
        assert!(forms.windows(2).all(|w| w[0] < w[1]), "{forms:?}");
        for s in ordered {
            assert_eq!(s.parse::<ShardCheckpoint>().unwrap().to_string(), s);
        }
    }
}
