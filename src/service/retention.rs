//! The audit trail's retention: with `ALLOT_AUDIT_RETENTION_DAYS` set, events older than that are
//! deleted in the background, a small batch per transaction with a pause between, so that pruning
//! a long history never holds the write lock for long. (Events are written by every workflow
//! through [`Ctx::record`](super::Ctx::record) and read by `api::audit`; nothing else removes
//! one.)

use std::time::Duration;

use crate::error::ApiError;
use crate::store::{self, Pool};

/// Events deleted per transaction.
pub(crate) const PRUNE_BATCH: i64 = 1_000;
/// The pause between two batches, for other writers.
const PRUNE_PAUSE: Duration = Duration::from_millis(50);
/// How often the pruner looks for expired events.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// When an event written before now has outlived `days`.
pub(crate) fn cutoff(days: u32) -> chrono::NaiveDateTime {
    store::now() - chrono::TimeDelta::days(i64::from(days))
}

/// Deletes every event written before `cutoff`, a batch per transaction with a pause between;
/// how many it deleted.
pub(crate) async fn prune(pool: &Pool, cutoff: chrono::NaiveDateTime) -> Result<usize, ApiError> {
    let mut total = 0;
    loop {
        let deleted = store::run(pool, move |conn| {
            store::write_tx(conn, |conn| {
                store::audit::prune_before(conn, cutoff, PRUNE_BATCH).map_err(ApiError::from)
            })
        })
        .await?;
        total += deleted;
        if deleted < PRUNE_BATCH as usize {
            return Ok(total);
        }
        tokio::time::sleep(PRUNE_PAUSE).await;
    }
}

/// Prunes now and every [`PRUNE_EVERY`], on the runtime it is spawned on (so it stops with the
/// server); nothing when no retention is configured.
pub(crate) fn spawn_pruner(pool: Pool, retention_days: Option<u32>) {
    let Some(days) = retention_days else {
        return;
    };
    tokio::spawn(async move {
        loop {
            match prune(&pool, cutoff(days)).await {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::info!(pruned, retention_days = days, "old audit events deleted")
                }
                Err(err) => tracing::warn!(error = ?err, "the audit retention pruning failed"),
            }
            tokio::time::sleep(PRUNE_EVERY).await;
        }
    });
}
