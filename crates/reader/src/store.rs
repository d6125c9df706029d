//! Opening the configured checkpoint store.

use sameday_core::checkpoint::FileCheckpointStore;
use sameday_core::checkpoint_dynamo::{AnyCheckpointStore, DynamoCheckpointStore};

use crate::config::CheckpointConfig;
use crate::error::ReaderError;

/// Opens the configured checkpoint store. With `own`, a DynamoDB store takes the fencing
/// token (deposing any other reader on the key); without, it only observes.
pub async fn open_store(
    cfg: &CheckpointConfig,
    aws: &aws_config::SdkConfig,
    own: bool,
) -> Result<AnyCheckpointStore, ReaderError> {
    Ok(match cfg {
        CheckpointConfig::File { path, .. } => AnyCheckpointStore::File(FileCheckpointStore::new(path)),
        CheckpointConfig::Dynamodb { table, key, .. } => {
            let client = aws_sdk_dynamodb::Client::new(aws);
            AnyCheckpointStore::Dynamo(if own {
                DynamoCheckpointStore::open(client, table, key).await?
            } else {
                DynamoCheckpointStore::observe(client, table, key)
            })
        }
    })
}
