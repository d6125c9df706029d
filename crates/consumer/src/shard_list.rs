//! The stream's shards as ListShards describes them, closed ones included, with their
//! parents: what the coordinator creates leases from after a reshard (a lease row names
//! its parents so a child waits until they reach `SHARD_END`).

use aws_sdk_kinesis::Client as KinesisClient;
use sameday_core::aws::describe;

use crate::shard_lease::ShardInfo;

/// Every shard of the stream with its parents (ListShards, paginated; closed shards too).
pub(crate) async fn list_shards(client: &KinesisClient, stream: &str) -> Result<Vec<ShardInfo>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match token.take() {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = req.send().await.map_err(|e| format!("ListShards {stream}: {}", describe(&e)))?;
        for s in page.shards() {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()];
            out.push(ShardInfo {
                shard_id: s.shard_id().to_owned(),
                parent_shard_ids: parents.into_iter().flatten().map(str::to_owned).collect(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}
