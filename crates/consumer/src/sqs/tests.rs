//! SendMessageBatch against the SQS emulator (fauxqs): FIFO order per group and
//! de-duplication on the event id.

use super::{SendOutcome, SqsMessage, SqsQueue};
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_testkit::{names, Fauxqs};

fn msg(group: &str, dedup: &str, body: &str) -> SqsMessage {
    SqsMessage { body: body.into(), group_id: Some(group.into()), dedup_id: Some(dedup.into()) }
}

#[tokio::test]
async fn fifo_batch_keeps_group_order_and_drops_replayed_event_ids() {
    let client = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
    let name = format!("{}.fifo", names::unique("changes"));
    client.create_queue().queue_name(&name).attributes(QueueAttributeName::FifoQueue, "true").send().await.unwrap();
    let queue = SqsQueue::resolve(client.clone(), &name).await.unwrap();
    assert!(queue.is_fifo());
    let first = [msg("app.t:1", "e1", "1-a"), msg("app.t:2", "e2", "2-a"), msg("app.t:1", "e3", "1-b")];
    assert_eq!(queue.send_batch(&first).await.unwrap(), vec![SendOutcome::Sent; 3]);
    // A replay of e1 (same event id) is accepted by the API and dropped by SQS.
    let replay = [msg("app.t:1", "e1", "1-a"), msg("app.t:2", "e4", "2-b")];
    assert_eq!(queue.send_batch(&replay).await.unwrap(), vec![SendOutcome::Sent; 2]);

    let mut got: Vec<String> = Vec::new();
    for _ in 0..50 {
        let out = client.receive_message().queue_url(queue.url()).max_number_of_messages(10).send().await.unwrap();
        for m in out.messages() {
            got.push(m.body().unwrap().to_owned());
            client
                .delete_message()
                .queue_url(queue.url())
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if got.len() >= 4 {
            break;
        }
    }
    let group = |p: &str| got.iter().filter(|b| b.starts_with(p)).cloned().collect::<Vec<_>>();
    assert_eq!(group("1-"), ["1-a", "1-b"], "group app.t:1 in order, replay dropped: {got:?}");
    assert_eq!(group("2-"), ["2-a", "2-b"], "{got:?}");
    assert_eq!(got.len(), 4);
}

#[tokio::test]
async fn missing_queue_is_a_clear_error() {
    let client = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
    let err = SqsQueue::resolve(client, "no_such_queue_here.fifo").await.err().unwrap().to_string();
    assert!(err.contains("no_such_queue_here") && err.contains("GetQueueUrl"), "{err}");
}
