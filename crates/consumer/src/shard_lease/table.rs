//! The lease table's DynamoDB operations, each a conditional write.

use super::*;

/// The lease table of one stream's consumers.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
    lease_duration_ms: u64,
    initial_checkpoint: ShardCheckpoint,
}

impl LeaseTable {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            lease_duration_ms: DEFAULT_LEASE_DURATION_MS,
            initial_checkpoint: ShardCheckpoint::TrimHorizon,
        }
    }

    pub(crate) fn with_lease_duration_ms(mut self, ms: u64) -> Self {
        self.lease_duration_ms = ms;
        self
    }

    /// Where shards without parents start (`TRIM_HORIZON` by default, or `LATEST`).
    pub(crate) fn with_initial_checkpoint(mut self, checkpoint: ShardCheckpoint) -> Self {
        self.initial_checkpoint = checkpoint;
        self
    }

    pub(crate) fn lease_duration_ms(&self) -> u64 {
        self.lease_duration_ms
    }

    /// Creates the table (on-demand) if it does not exist; for local set-ups and tests.
    /// Production tables come from CloudFormation.
    pub(crate) async fn ensure_table(&self) -> Result<(), LeaseError> {
        sameday_core::checkpoint_dynamo::ensure_string_key_table(&self.client, &self.table, SHARD_ID_ATTR)
            .await
            .map_err(|(retry, msg)| self.remote("-", retry, msg))
    }

    /// Creates a lease for every shard that has none; returns how many were created.
    /// Existing leases are never touched, so any worker may call it at any time.
    pub(crate) async fn sync_shards(&self, shards: &[ShardInfo]) -> Result<usize, LeaseError> {
        let mut created = 0;
        for shard in shards {
            // A child must read its whole shard, whatever the configured start, or the
            // records written between the reshard and now would be skipped.
            let checkpoint = if shard.parent_shard_ids.is_empty() {
                self.initial_checkpoint.clone()
            } else {
                ShardCheckpoint::TrimHorizon
            };
            let parents = shard.parent_shard_ids.iter().map(|p| AttributeValue::S(p.clone())).collect();
            let res = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(SHARD_ID_ATTR, AttributeValue::S(shard.shard_id.clone()))
                .item("lease_counter", n(0))
                .item("expires_at_ms", n(0))
                .item("checkpoint", AttributeValue::S(checkpoint.to_string()))
                .item("checkpoint_ord", AttributeValue::S(checkpoint.sortable()))
                .item("parent_shard_ids", AttributeValue::L(parents))
                .condition_expression("attribute_not_exists(shard_id)")
                .send()
                .await;
            match res {
                Ok(_) => created += 1,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(self.remote(&shard.shard_id, classify(&e), describe(&e))),
            }
        }
        Ok(created)
    }

    /// Every lease, by shard id (a strongly consistent scan; lease tables are small).
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.remote("-", classify(&e), describe(&e)))?;
            for item in out.items() {
                leases.push(self.parse(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(leases)
    }

    /// One lease, strongly consistent.
    pub(crate) async fn get(&self, shard_id: &str) -> Result<Option<Lease>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SHARD_ID_ATTR, AttributeValue::S(shard_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.remote(shard_id, classify(&e), describe(&e)))?;
        out.item.as_ref().map(|item| self.parse(item)).transpose()
    }

    /// Takes `observed` (as read by [`Self::list`]) for `worker` if it is unowned or
    /// expired at `now_ms` and unchanged since it was read.
    pub(crate) async fn take(&self, observed: &Lease, worker: &str, now_ms: u64) -> Result<Lease, LeaseError> {
        if observed.is_finished() {
            return Err(LeaseError::Finished { shard_id: observed.shard_id.clone() });
        }
        if let Some(owner) = observed.live_owner(now_ms) {
            return Err(LeaseError::NotAvailable {
                shard_id: observed.shard_id.clone(),
                owner: owner.to_owned(),
                expires_at_ms: observed.expires_at_ms,
            });
        }
        self.assign(observed, "#ctr = :ctr", &[], worker, now_ms).await
    }

    /// Takes `observed` from its live owner for `to_worker`, to even out the load (see
    /// [`plan`]). Read from the result's [`Stolen::start_after_ms`] on.
    pub(crate) async fn steal(&self, observed: &Lease, to_worker: &str, now_ms: u64) -> Result<Stolen, LeaseError> {
        if observed.is_finished() {
            return Err(LeaseError::Finished { shard_id: observed.shard_id.clone() });
        }
        let Some(from) = observed.owner.as_deref() else {
            return Err(LeaseError::NotOwned { shard_id: observed.shard_id.clone(), action: "steal from" });
        };
        let condition = "#owner = :from AND #ctr = :ctr";
        let values = [(":from", AttributeValue::S(from.to_owned()))];
        let lease = self.assign(observed, condition, &values, to_worker, now_ms).await?;
        // The condition held, so the victim has not renewed since `observed`: its lease ends
        // exactly there.
        Ok(Stolen { lease, start_after_ms: observed.expires_at_ms })
    }

    /// Sets a new owner and expiry, bumping the counter, if `condition` holds.
    async fn assign(
        &self,
        observed: &Lease,
        condition: &str,
        extra: &[(&'static str, AttributeValue)],
        worker: &str,
        now_ms: u64,
    ) -> Result<Lease, LeaseError> {
        let mut values = vec![
            (":ctr", n(observed.lease_counter)),
            (":one", n(1)),
            (":me", AttributeValue::S(worker.to_owned())),
            (":exp", n(now_ms + self.lease_duration_ms)),
        ];
        values.extend(extra.iter().cloned());
        let update = "SET #owner = :me, #exp = :exp, #ctr = #ctr + :one";
        self.update(&observed.shard_id, update, condition, values).await?.ok_or_else(|| LeaseError::Contended {
            shard_id: observed.shard_id.clone(),
            observed: observed.lease_counter,
        })
    }

    /// Extends a lease we hold to `now_ms` + the lease duration. Fails with
    /// [`LeaseError::LeaseLost`] if anyone took, stole or released it meanwhile.
    pub(crate) async fn renew(&self, held: &Lease, now_ms: u64) -> Result<Lease, LeaseError> {
        let (owner, mut values) = self.holder_values(held, "renew")?;
        values.extend([(":one", n(1)), (":exp", n(now_ms + self.lease_duration_ms))]);
        let update = "SET #exp = :exp, #ctr = #ctr + :one";
        self.update(&held.shard_id, update, "#owner = :me AND #ctr = :ctr", values)
            .await?
            .ok_or_else(|| lost(held, owner))
    }

    /// Records that everything up to `checkpoint` reached SQS. Conditional on still holding
    /// the lease and on not moving backwards (an equal checkpoint is accepted).
    pub(crate) async fn checkpoint(&self, held: &Lease, checkpoint: &ShardCheckpoint) -> Result<Lease, LeaseError> {
        let (owner, mut values) = self.holder_values(held, "checkpoint")?;
        if checkpoint.sortable() < held.checkpoint.sortable() {
            return Err(backwards(held, &held.checkpoint, checkpoint));
        }
        values.extend([
            (":cp", AttributeValue::S(checkpoint.to_string())),
            (":ord", AttributeValue::S(checkpoint.sortable())),
        ]);
        let update = "SET #ckpt = :cp, #ord = :ord";
        let condition = "#owner = :me AND #ctr = :ctr AND #ord <= :ord";
        if let Some(lease) = self.update(&held.shard_id, update, condition, values).await? {
            return Ok(lease);
        }
        // Say which half of the condition failed.
        match self.get(&held.shard_id).await? {
            Some(now) if now.owner == held.owner && now.lease_counter == held.lease_counter => {
                Err(backwards(held, &now.checkpoint, checkpoint))
            }
            _ => Err(lost(held, owner)),
        }
    }

    /// Gives a lease back on graceful shutdown: no owner, expired, so the next worker to
    /// look takes it at once instead of waiting out the lease.
    pub(crate) async fn release(&self, held: &Lease) -> Result<(), LeaseError> {
        let (owner, mut values) = self.holder_values(held, "release")?;
        values.extend([(":one", n(1)), (":zero", n(0))]);
        let update = "REMOVE #owner SET #exp = :zero, #ctr = #ctr + :one";
        match self.update(&held.shard_id, update, "#owner = :me AND #ctr = :ctr", values).await? {
            Some(_) => Ok(()),
            None => Err(lost(held, owner)),
        }
    }

    fn holder_values<'a>(&self, held: &'a Lease, action: &'static str) -> Result<(&'a str, Values), LeaseError> {
        let owner =
            held.owner.as_deref().ok_or_else(|| LeaseError::NotOwned { shard_id: held.shard_id.clone(), action })?;
        Ok((owner, vec![(":me", AttributeValue::S(owner.to_owned())), (":ctr", n(held.lease_counter))]))
    }

    /// A conditional UpdateItem returning the new lease, or `None` if the condition failed.
    async fn update(
        &self,
        shard_id: &str,
        update: &str,
        condition: &str,
        values: Values,
    ) -> Result<Option<Lease>, LeaseError> {
        // `owner` is a DynamoDB reserved word, so every attribute goes through a name; only
        // the names an expression uses may be sent.
        const NAMES: [(&str, &str); 5] = [
            ("#owner", "owner"),
            ("#ctr", "lease_counter"),
            ("#exp", "expires_at_ms"),
            ("#ckpt", "checkpoint"),
            ("#ord", "checkpoint_ord"),
        ];
        let names = NAMES
            .iter()
            .filter(|(alias, _)| update.contains(alias) || condition.contains(alias))
            .map(|(alias, name)| (alias.to_string(), name.to_string()))
            .collect();
        let values = values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(SHARD_ID_ATTR, AttributeValue::S(shard_id.to_owned()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| {
                    self.remote(shard_id, Retry::Permanent, "UpdateItem returned no attributes".into())
                })?;
                self.parse(&item).map(Some)
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(self.remote(shard_id, classify(&e), describe(&e))),
        }
    }

    fn parse(&self, item: &Item) -> Result<Lease, LeaseError> {
        let shard_id = item.get(SHARD_ID_ATTR).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let corrupt = |message: String| LeaseError::Corrupt { location: self.location(&shard_id), message };
        let number = |attr: &str| -> Result<u64, LeaseError> {
            match item.get(attr) {
                None => Ok(0),
                Some(v) => v
                    .as_n()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt(format!("{attr} is not a non-negative integer: {v:?}"))),
            }
        };
        let checkpoint = match item.get("checkpoint").and_then(|v| v.as_s().ok()) {
            Some(text) => text.parse().map_err(|e: LeaseError| corrupt(format!("checkpoint: {e}")))?,
            None => return Err(corrupt("no checkpoint attribute".into())),
        };
        let parent_shard_ids = match item.get("parent_shard_ids") {
            None => Vec::new(),
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| v.as_s().cloned().map_err(|_| corrupt(format!("parent_shard_ids holds {v:?}"))))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(corrupt(format!("parent_shard_ids is not a list: {other:?}"))),
        };
        Ok(Lease {
            owner: item.get("owner").and_then(|v| v.as_s().ok()).cloned(),
            lease_counter: number("lease_counter")?,
            expires_at_ms: number("expires_at_ms")?,
            checkpoint,
            parent_shard_ids,
            shard_id: shard_id.clone(),
        })
    }

    fn location(&self, shard_id: &str) -> String {
        format!("dynamodb:{}/{shard_id}", self.table)
    }

    fn remote(&self, shard_id: &str, retry: Retry, message: String) -> LeaseError {
        LeaseError::Remote { location: self.location(shard_id), message, retryable: retry == Retry::Transient }
    }
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn lost(held: &Lease, worker: &str) -> LeaseError {
    LeaseError::LeaseLost { shard_id: held.shard_id.clone(), worker: worker.to_owned(), counter: held.lease_counter }
}

fn backwards(held: &Lease, stored: &ShardCheckpoint, attempted: &ShardCheckpoint) -> LeaseError {
    LeaseError::Backwards { shard_id: held.shard_id.clone(), stored: stored.clone(), attempted: attempted.clone() }
}
