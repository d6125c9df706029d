//! Checkpoints in DynamoDB with a fencing token, for readers running on ECS.
//!
//! One item per reader (`key`). Opening the store increments the item's `fence`
//! counter and remembers the value; every later write is conditional on the item still
//! carrying that value. When a second reader opens the same key, the first one's writes
//! fail with [`CheckpointError::Fenced`]: two readers can never both advance a
//! checkpoint, and a deposed one learns it on its next save and stops. Writes are also
//! conditional on the position not going backwards (`ord`).
//!
//! **Active and standby readers.** [`DynamoCheckpointStore::acquire`] adds a lease to the
//! same item (`owner`, `lease_expires_ms`): a reader takes the fence only when no other
//! reader holds an unexpired lease, and otherwise waits as a warm standby. The active
//! reader renews every third of the lease ([`DynamoCheckpointStore::renew`]); a renew that
//! finds the fence moved means it was deposed, and since every save is conditional on the
//! fence, a deposed reader (paused, partitioned, slow) can never write a checkpoint. On a
//! graceful stop [`DynamoCheckpointStore::release`] ends the lease so the standby takes over
//! at once instead of after expiry.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

use crate::aws::{classify, describe, Retry};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::clock::now_ms;

/// Another reader holds the lease: wait as a standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    pub holder: String,
    pub expires_ms: u64,
}

/// Name of the partition key attribute of the checkpoint table.
pub const KEY_ATTR: &str = "key";

pub struct DynamoCheckpointStore {
    client: Client,
    table: String,
    key: String,
    fence: u64,
}

impl DynamoCheckpointStore {
    /// Takes ownership of `key` by bumping its fencing token.
    pub async fn open(client: Client, table: &str, key: &str) -> Result<Self, CheckpointError> {
        let out = client
            .update_item()
            .table_name(table)
            .key(KEY_ATTR, AttributeValue::S(key.to_owned()))
            .update_expression("ADD fence :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| remote(table, key, classify(&e), describe(&e)))?;
        let fence = fence_of(out.attributes(), table, key)?;
        Ok(Self { client, table: table.to_owned(), key: key.to_owned(), fence })
    }

    /// Takes the fence if no other reader holds an unexpired lease on `key`, as `owner`, for
    /// `lease_ms`. Returns `Ok(None)` when another reader is active (`Standby` describes it).
    pub async fn try_acquire(
        client: Client,
        table: &str,
        key: &str,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Result<Self, Standby>, CheckpointError> {
        let now = now_ms();
        let item = client
            .get_item()
            .table_name(table)
            .key(KEY_ATTR, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote(table, key, classify(&e), describe(&e)))?
            .item;
        let number = |name: &str| {
            item.as_ref().and_then(|i| i.get(name)).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok())
        };
        let holder = item.as_ref().and_then(|i| i.get("owner")).and_then(|v| v.as_s().ok()).cloned();
        let expires = number("lease_expires_ms").unwrap_or(0);
        if let Some(holder) = holder.filter(|h| h != owner && expires > now) {
            return Ok(Err(Standby { holder, expires_ms: expires }));
        }
        let observed = number("fence");
        let mut req = client
            .update_item()
            .table_name(table)
            .key(KEY_ATTR, AttributeValue::S(key.to_owned()))
            .update_expression("SET #owner = :me, lease_expires_ms = :exp ADD fence :one")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":exp", AttributeValue::N((now + lease_ms).to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew);
        // Only on what we saw: of two standbys racing for an expired lease, one wins.
        req = match observed {
            Some(f) => req
                .condition_expression("fence = :seen")
                .expression_attribute_values(":seen", AttributeValue::N(f.to_string())),
            None => req.condition_expression("attribute_not_exists(fence)"),
        };
        match req.send().await {
            Ok(out) => {
                let fence = fence_of(out.attributes(), table, key)?;
                Ok(Ok(Self { client, table: table.to_owned(), key: key.to_owned(), fence }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(Err(Standby { holder: "(another reader, just now)".into(), expires_ms: now + lease_ms }))
            }
            Err(e) => Err(remote(table, key, classify(&e), describe(&e))),
        }
    }

    /// Extends our lease. [`CheckpointError::Fenced`] when another reader took over.
    pub async fn renew(&self, owner: &str, lease_ms: u64) -> Result<(), CheckpointError> {
        self.lease_update("SET lease_expires_ms = :exp", owner, now_ms() + lease_ms).await
    }

    /// Ends our lease at once (graceful stop): a standby takes over on its next look.
    pub async fn release(&self, owner: &str) -> Result<(), CheckpointError> {
        self.lease_update("SET lease_expires_ms = :exp", owner, 0).await
    }

    async fn lease_update(&self, update: &str, owner: &str, expires: u64) -> Result<(), CheckpointError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTR, AttributeValue::S(self.key.clone()))
            .update_expression(update)
            .condition_expression("fence = :fence AND #owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":fence", AttributeValue::N(self.fence.to_string()))
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let current = self
                    .get_item()
                    .await?
                    .and_then(|i| i.get("fence").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()))
                    .unwrap_or(0);
                Err(CheckpointError::Fenced { key: self.key.clone(), ours: self.fence, current })
            }
            Err(e) => Err(remote(&self.table, &self.key, classify(&e), describe(&e))),
        }
    }

    /// A read-only handle that does not take ownership: the running reader keeps its
    /// fence (for `sameday positions` without `--set`). Its saves fail.
    pub fn observe(client: Client, table: &str, key: &str) -> Self {
        Self { client, table: table.to_owned(), key: key.to_owned(), fence: 0 }
    }

    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Creates the checkpoint table (on-demand) if it does not exist; for local set-ups and
    /// tests. Production tables come from CloudFormation.
    pub async fn ensure_table(client: &Client, table: &str) -> Result<(), CheckpointError> {
        ensure_string_key_table(client, table, KEY_ATTR).await.map_err(|(retry, msg)| remote(table, "-", retry, msg))
    }

    async fn write(&self, cp: &Checkpoint, force: bool) -> Result<(), CheckpointError> {
        if self.fence == 0 {
            return Err(remote(
                &self.table,
                &self.key,
                Retry::Permanent,
                "this handle only observes the checkpoint (opened without a fencing token)".into(),
            ));
        }
        let json = serde_json::to_string(cp).expect("a checkpoint always serializes");
        let condition =
            if force { "fence = :fence" } else { "fence = :fence AND (attribute_not_exists(ord) OR ord <= :ord)" };
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTR, AttributeValue::S(self.key.clone()))
            .update_expression("SET checkpoint = :cp, ord = :ord, updated_at_ms = :now")
            .condition_expression(condition)
            .expression_attribute_values(":cp", AttributeValue::S(json))
            .expression_attribute_values(":ord", AttributeValue::N(cp.order().to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(":fence", AttributeValue::N(self.fence.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(self.explain_conflict(cp).await)
            }
            Err(e) => Err(remote(&self.table, &self.key, classify(&e), describe(&e))),
        }
    }

    /// After a failed condition, reads the item to say whether we were fenced or went back.
    async fn explain_conflict(&self, cp: &Checkpoint) -> CheckpointError {
        let item = match self.get_item().await {
            Ok(item) => item,
            Err(e) => return e,
        };
        let current = item
            .as_ref()
            .and_then(|i| i.get("fence"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if current != self.fence {
            return CheckpointError::Fenced { key: self.key.clone(), ours: self.fence, current };
        }
        let stored = item.as_ref().and_then(|i| parse_checkpoint(&self.table, i).transpose()).transpose();
        match stored {
            Ok(Some(stored)) => CheckpointError::Backwards { stored: stored.position, attempted: cp.position.clone() },
            Ok(None) => remote(&self.table, &self.key, Retry::Transient, "conditional write failed".into()),
            Err(e) => e,
        }
    }

    async fn get_item(&self) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, CheckpointError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTR, AttributeValue::S(self.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote(&self.table, &self.key, classify(&e), describe(&e)))?;
        Ok(out.item)
    }
}

fn parse_checkpoint(
    table: &str,
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let Some(text) = item.get("checkpoint").and_then(|v| v.as_s().ok()) else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|source| CheckpointError::Corrupt { location: format!("dynamodb:{table}"), source })
}

/// The fencing token an UpdateItem (returning the updated attributes) wrote.
fn fence_of(
    attributes: Option<&std::collections::HashMap<String, AttributeValue>>,
    table: &str,
    key: &str,
) -> Result<u64, CheckpointError> {
    attributes
        .and_then(|a| a.get("fence"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| remote(table, key, Retry::Permanent, "UpdateItem returned no fence".into()))
}

fn remote(table: &str, key: &str, retry: Retry, message: String) -> CheckpointError {
    CheckpointError::Remote {
        location: format!("dynamodb:{table}/{key}"),
        message,
        retryable: retry == Retry::Transient,
    }
}

impl CheckpointStore for DynamoCheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match self.get_item().await? {
            Some(item) => parse_checkpoint(&self.table, &item),
            None => Ok(None),
        }
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.write(cp, false).await
    }

    async fn force_save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.write(cp, true).await
    }

    fn describe(&self) -> String {
        format!("dynamodb:{}/{} (fence {})", self.table, self.key, self.fence)
    }
}

/// Creates an on-demand table keyed by one string attribute unless it exists (local
/// set-ups and tests; production tables come from CloudFormation). Errors come back
/// classified, with a readable description.
pub async fn ensure_string_key_table(client: &Client, table: &str, key_attr: &str) -> Result<(), (Retry, String)> {
    let res = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key_attr)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition has all fields"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key_attr)
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema has all fields"),
        )
        .send()
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
        Err(e) => Err((classify(&e), describe(&e))),
    }
}

/// A checkpoint store chosen by configuration.
pub enum AnyCheckpointStore {
    File(crate::checkpoint::FileCheckpointStore),
    Dynamo(DynamoCheckpointStore),
}

impl CheckpointStore for AnyCheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match self {
            Self::File(s) => s.load().await,
            Self::Dynamo(s) => s.load().await,
        }
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        match self {
            Self::File(s) => s.save(cp).await,
            Self::Dynamo(s) => s.save(cp).await,
        }
    }

    async fn force_save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        match self {
            Self::File(s) => s.force_save(cp).await,
            Self::Dynamo(s) => s.force_save(cp).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::File(s) => s.describe(),
            Self::Dynamo(s) => s.describe(),
        }
    }
}
