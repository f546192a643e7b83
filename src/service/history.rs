//! Usage over time: the daily close of the usage history (in the background, and on the first read
//! of a day) and the per-day figures a node's history answers with. The rows themselves are kept by
//! [`store::history`] as usage changes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::NaiveDate;

use crate::clock::Clock;
use crate::domain::ids::NodeId;
use crate::error::ApiError;
use crate::store::nodes::Node;
use crate::store::{self, DbConnection, Pool, allocations, history};

/// How often the background task looks whether a new day has begun.
const CLOSE_EVERY: Duration = Duration::from_secs(60);

/// One resource of a node on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceDay {
    pub resource: String,
    pub limit: i64,
    pub peak: i64,
    pub used: i64,
}

/// A node's figures on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Day {
    pub day: NaiveDate,
    pub active_users: i64,
    pub resources: Vec<ResourceDay>,
}

/// Opens `today` in the history unless it is open: closes the days before it (a write, in its own
/// transaction; nothing when the day is open already, which is almost always).
pub(crate) fn open_today(conn: &mut DbConnection, today: NaiveDate) -> diesel::QueryResult<()> {
    if history::is_open(conn, today)? {
        return Ok(());
    }
    store::write_tx(conn, |conn| history::open_day(conn, today))
}

/// What happens as a day begins, once, by whoever asks first (the background task below, or the
/// first read of a node's history): the day opens in the history, and the limits that move on it
/// by date are judged for quota crossings (`seats::limits_moved`).
pub(crate) fn day_begun(conn: &mut DbConnection, today: NaiveDate) -> Result<(), ApiError> {
    open_today(conn, today)?;
    super::seats::limits_moved(conn, today)
}

/// Begins each new day shortly after it begins by `clock` ([`day_begun`]), so that the day before
/// is closed (its active users counted) while its sightings are fresh, and a limit that moves by
/// date is noticed, even when nothing is written or read.
pub fn spawn_daily_close(pool: Pool, clock: Clock) {
    tokio::spawn(async move {
        loop {
            let (pool, today) = (pool.clone(), clock.today());
            let opened = tokio::task::spawn_blocking(move || {
                let mut conn = pool.get().map_err(|e| e.to_string())?;
                day_begun(&mut conn, today).map_err(|e| e.to_string())
            })
            .await;
            match opened {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "the usage history's day did not open")
                }
                Err(err) => tracing::warn!(error = %err, "the usage history's close stopped"),
            }
            tokio::time::sleep(CLOSE_EVERY).await;
        }
    });
}

/// `node`'s history from `from` to `to` (the days it has rows on), opening `today` first; today's
/// limit and active users are as of now. `resource`, if given, keeps only that resource.
pub(crate) fn of_node(
    conn: &mut DbConnection,
    node: &Node,
    from: NaiveDate,
    to: NaiveDate,
    resource: Option<&str>,
    today: NaiveDate,
) -> diesel::QueryResult<Vec<Day>> {
    open_today(conn, today)?;
    let active = history::active_of_node(conn, node.id, from, to)?;
    let live_limits: BTreeMap<String, i64> = if (from..=to).contains(&today) {
        allocations::totals_on(conn, &[node.id], today)?
            .into_iter()
            .map(|((_, resource), (limit, _))| (resource, limit))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    for row in history::of_node(conn, node.id, from, to)? {
        let day = days.entry(row.day).or_insert_with(|| Day {
            day: row.day,
            active_users: active.get(&row.day).copied().unwrap_or(0),
            resources: Vec::new(),
        });
        if resource.is_some_and(|wanted| wanted != row.resource) {
            continue;
        }
        let limit = if row.day == today {
            live_limits.get(&row.resource).copied().unwrap_or(0)
        } else {
            row.day_limit
        };
        day.resources.push(ResourceDay {
            resource: row.resource,
            limit,
            peak: row.peak,
            used: row.used,
        });
    }
    if let Some(day) = days.get_mut(&today) {
        day.active_users = history::active_in_subtree(conn, &node.path, today)?;
    }
    Ok(days.into_values().collect())
}

/// The figures of each of `nodes` on `day`, a day before `today`, by node id: the limits settled
/// when it closed, the peak and end-of-day usage, and the active users counted then; a node the
/// history did not count that day is absent. Opens `today` first, so that `day` is closed; then
/// two queries per 500 nodes.
pub(crate) fn of_nodes_on(
    conn: &mut DbConnection,
    nodes: &[NodeId],
    day: NaiveDate,
    today: NaiveDate,
) -> diesel::QueryResult<HashMap<String, Day>> {
    open_today(conn, today)?;
    let active = history::active_of_nodes_on(conn, nodes, day)?;
    let mut days: HashMap<String, Day> = HashMap::new();
    for row in history::of_nodes_on(conn, nodes, day)? {
        days.entry(row.node_id.clone())
            .or_insert_with(|| Day {
                day,
                active_users: active.get(&row.node_id).copied().unwrap_or(0),
                resources: Vec::new(),
            })
            .resources
            .push(ResourceDay {
                resource: row.resource,
                limit: row.day_limit,
                peak: row.peak,
                used: row.used,
            });
    }
    Ok(days)
}
