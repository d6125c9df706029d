//! Finding an SQS queue by name or URL, shared by the consumer (destinations, dead letters)
//! and the worker (its queue, its dead-letter queue).

use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;

use crate::aws::{classify, describe, Retry};

/// A resolved queue: its URL and whether it is FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub url: String,
    pub fifo: bool,
    /// The queue's `MaximumMessageSize` in bytes, when it says.
    pub max_message_bytes: Option<usize>,
}

/// Looks a queue up by name (GetQueueUrl) or takes a URL as is, and reads whether it is
/// FIFO. The error says which call failed and whether retrying may help.
pub async fn resolve_queue(client: &Client, name_or_url: &str) -> Result<QueueRef, (Retry, String)> {
    let url = if name_or_url.starts_with("http://") || name_or_url.starts_with("https://") {
        name_or_url.to_owned()
    } else {
        let out = client
            .get_queue_url()
            .queue_name(name_or_url)
            .send()
            .await
            .map_err(|e| (classify(&e), format!("GetQueueUrl: {}", describe(&e))))?;
        out.queue_url().map(str::to_owned).ok_or((Retry::Permanent, "GetQueueUrl returned no URL".to_owned()))?
    };
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::FifoQueue)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await
        .map_err(|e| (classify(&e), format!("GetQueueAttributes: {}", describe(&e))))?;
    let fifo = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::FifoQueue))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let max_message_bytes = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
        .and_then(|v| v.parse::<usize>().ok());
    Ok(QueueRef { url, fifo, max_message_bytes })
}
