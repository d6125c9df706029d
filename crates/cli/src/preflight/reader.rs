//! The reader's preflight: the source (the MySQL checks of `sameday_mysql::checks`), the
//! stream, the checkpoint store, and the stored checkpoint against binlog retention.

use sameday_core::checkpoint::CheckpointStore;
use sameday_core::checkpoint_dynamo::KEY_ATTR;
use sameday_core::clock::now_ms;
use sameday_mysql::checks::{checkpoint_horizon, replica_checks, ReplicaCheck};
use sameday_mysql::Session;
use sameday_reader::TableFilter;
use sameday_reader::{CheckpointConfig, ReaderConfig};

use super::{aws, Problem};

pub(crate) async fn reader(cfg: &ReaderConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut session = match Session::connect(&cfg.source).await {
        Ok(session) => Some(session),
        Err(e) => {
            problems.push(Problem::error(format!(
                "cannot connect to the source: {e}; check [source] host, port, user, password and tls"
            )));
            None
        }
    };
    if let Some(session) = session.as_mut() {
        problems.extend(source(session, cfg).await);
    }

    let sdk = sameday_core::aws::sdk_config(&cfg.aws).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    problems.extend(aws::stream(&kinesis, &cfg.kinesis.stream, cfg.kinesis.max_record_bytes).await);
    if let Some(cc) = &cfg.claim_check {
        problems.extend(aws::writable_location(&cfg.aws, "claim_check.location", &cc.location).await);
    }
    let store_problems = match &cfg.checkpoint {
        CheckpointConfig::File { path, .. } => aws::writable_dir("checkpoint.path", path).into_iter().collect(),
        CheckpointConfig::Dynamodb { table, .. } => {
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            aws::table_key(&client, "checkpoint.table", table, KEY_ATTR, false).await
        }
    };
    let store_usable = store_problems.is_empty();
    problems.extend(store_problems);
    match (&cfg.dead_letter_location, &cfg.dead_letter_path) {
        (Some(location), _) => {
            problems.extend(aws::writable_location(&cfg.aws, "dead_letter_location", location).await)
        }
        (None, Some(path)) => problems.extend(aws::writable_dir("dead_letter_path", path)),
        (None, None) => {}
    }

    // Read the checkpoint without taking the fencing token: a running reader stays active.
    if let (Some(session), true) = (session.as_mut(), store_usable) {
        let loaded = match sameday_reader::open_store(&cfg.checkpoint, &sdk, false).await {
            Ok(store) => store.load().await.map_err(|e| format!("{}: {e}", store.describe())),
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(Some(cp)) => match checkpoint_horizon(session, &cp, now_ms()).await {
                Ok(p) => problems.extend(p),
                Err(e) => problems.push(Problem::error(format!("cannot compare the checkpoint with the binlogs: {e}"))),
            },
            // No checkpoint: the reader starts at start_position.
            Ok(None) => {}
            Err(e) => problems.push(Problem::error(format!(
                "cannot read the checkpoint: {e}; fix [checkpoint] or the store's permissions"
            ))),
        }
    }
    if let Some(session) = session {
        session.close().await;
    }
    problems
}

/// The MySQL checks the reader also runs at start.
async fn source(session: &mut Session, cfg: &ReaderConfig) -> Vec<Problem> {
    let info = match session.server_info().await {
        Ok(info) => info,
        Err(e) => return vec![Problem::error(format!("cannot read the source's version and server_id: {e}"))],
    };
    // validate() already parsed the filter.
    let filter = match TableFilter::new(&cfg.filter) {
        Ok(f) => f,
        Err(e) => return vec![Problem::error(format!("filter: {e}"))],
    };
    let tables = filter.literal_includes();
    let check = ReplicaCheck { info: &info, server_id: cfg.source.server_id, tables: &tables };
    match replica_checks(session, &check).await {
        Ok(problems) => problems,
        Err(e) => vec![Problem::error(format!("the source checks could not run: {e}"))],
    }
}
