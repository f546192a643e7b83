//! The settings each node sets of each group (`node_settings`): the values as JSON, the secrets
//! sealed apart. What the JSON means and which values apply is `domain::settings`; sealing is
//! `secret`. This module only reads and writes rows.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::node_settings;
use super::{DbConnection, corrupt};
use crate::domain::ids::NodeId;
use crate::domain::settings::Group;

/// One node's row of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub node_id: NodeId,
    pub group: Group,
    /// The JSON of the values the node sets.
    pub values: String,
    /// Each secret's field name, with its sealed value.
    pub secrets: BTreeMap<String, Vec<u8>>,
    pub version: i64,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = node_settings)]
struct Stored {
    node_id: String,
    settings_group: String,
    own_values: String,
    secrets: String,
    version: i64,
    updated_at: NaiveDateTime,
}

impl TryFrom<Stored> for Row {
    type Error = diesel::result::Error;
    fn try_from(row: Stored) -> Result<Self, Self::Error> {
        use base64::Engine;
        let encoded: BTreeMap<String, String> =
            serde_json::from_str(&row.secrets).map_err(corrupt)?;
        let secrets = encoded
            .into_iter()
            .map(|(field, sealed)| {
                base64::engine::general_purpose::STANDARD
                    .decode(sealed)
                    .map(|bytes| (field, bytes))
            })
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        Ok(Row {
            node_id: row.node_id.parse().map_err(corrupt)?,
            group: row.settings_group.parse().map_err(corrupt)?,
            values: row.own_values,
            secrets,
            version: row.version,
            updated_at: row.updated_at,
        })
    }
}

/// The rows of `group` of the nodes `ids` (a lineage: a handful), in no particular order.
pub(crate) fn of_nodes(
    conn: &mut DbConnection,
    ids: &[NodeId],
    group: Group,
) -> QueryResult<Vec<Row>> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    node_settings::table
        .filter(node_settings::node_id.eq_any(ids))
        .filter(node_settings::settings_group.eq(group.as_str()))
        .select(Stored::as_select())
        .load(conn)?
        .into_iter()
        .map(Row::try_from)
        .collect()
}

/// `node`'s row of `group`, if it ever set it.
pub(crate) fn find(
    conn: &mut DbConnection,
    node: NodeId,
    group: Group,
) -> QueryResult<Option<Row>> {
    Ok(of_nodes(conn, &[node], group)?.pop())
}

/// Writes `row` as the node's values of its group: `previous` is the version it replaces (0: the
/// node never set the group, so the row is new).
pub(crate) fn save(conn: &mut DbConnection, row: &Row, previous: i64) -> QueryResult<()> {
    use base64::Engine;
    let secrets: BTreeMap<&str, String> = row
        .secrets
        .iter()
        .map(|(field, sealed)| {
            (
                field.as_str(),
                base64::engine::general_purpose::STANDARD.encode(sealed),
            )
        })
        .collect();
    let secrets = serde_json::to_string(&secrets).expect("a map of strings serialises");
    if previous == 0 {
        diesel::insert_into(node_settings::table)
            .values((
                node_settings::node_id.eq(row.node_id.to_string()),
                node_settings::settings_group.eq(row.group.as_str()),
                node_settings::own_values.eq(&row.values),
                node_settings::secrets.eq(&secrets),
                node_settings::version.eq(row.version),
                node_settings::updated_at.eq(row.updated_at),
            ))
            .execute(conn)?;
    } else {
        diesel::update(
            node_settings::table.find((row.node_id.to_string(), row.group.as_str().to_owned())),
        )
        .set((
            node_settings::own_values.eq(&row.values),
            node_settings::secrets.eq(&secrets),
            node_settings::version.eq(row.version),
            node_settings::updated_at.eq(row.updated_at),
        ))
        .execute(conn)?;
    }
    Ok(())
}
