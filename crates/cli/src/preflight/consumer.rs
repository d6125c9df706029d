//! The consumer's preflight: the stream it reads, the lease table, every destination queue
//! and the dead-letter destination.

use sameday_consumer::config::ConsumerConfig;
use sameday_consumer::shard_lease::SHARD_ID_ATTR;

use super::{aws, Problem};

pub(crate) async fn consumer(cfg: &ConsumerConfig) -> Vec<Problem> {
    let sdk = sameday_core::aws::sdk_config(&cfg.aws).await;
    let mut problems = aws::stream(&aws_sdk_kinesis::Client::new(&sdk), &cfg.kinesis.stream, None).await;
    if let Some(cc) = &cfg.claim_check {
        problems.extend(aws::writable_location(&cfg.aws, "claim_check.location", &cc.location).await);
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    problems.extend(
        aws::table_key(&dynamodb, "leases.table", &cfg.leases.table, SHARD_ID_ATTR, cfg.leases.create_table).await,
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for name in cfg.queue_names() {
        match aws::queue(&sqs, "route.queues", &name).await {
            Ok(queue) => problems.extend(aws::fifo_warning("route.queues", &queue)),
            Err(p) => problems.push(p),
        }
    }
    if let Some(name) = &cfg.dead_letter.queue {
        if let Err(p) = aws::queue(&sqs, "dead_letter.queue", name).await {
            problems.push(p);
        }
    }
    if let Some(path) = &cfg.dead_letter.path {
        problems.extend(aws::writable_dir("dead_letter.path", path));
    }
    problems
}
