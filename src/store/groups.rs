//! A customer's groups of mailboxes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{group_members, mailbox_groups, mailboxes};
use super::{DbConnection, corrupt};
use crate::domain::ids::{GroupId, MailboxId, NodeId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub id: GroupId,
    pub node_id: NodeId,
    pub name: String,
    pub created_at: NaiveDateTime,
}

type Row = (String, String, String, NaiveDateTime);

fn from_row((id, node_id, name, created_at): Row) -> QueryResult<Group> {
    Ok(Group {
        id: id.parse().map_err(corrupt)?,
        node_id: node_id.parse().map_err(corrupt)?,
        name,
        created_at,
    })
}

const COLUMNS: (
    mailbox_groups::id,
    mailbox_groups::node_id,
    mailbox_groups::name,
    mailbox_groups::created_at,
) = (
    mailbox_groups::id,
    mailbox_groups::node_id,
    mailbox_groups::name,
    mailbox_groups::created_at,
);

pub(crate) fn find(conn: &mut DbConnection, id: GroupId) -> QueryResult<Option<Group>> {
    mailbox_groups::table
        .find(id.to_string())
        .select(COLUMNS)
        .first::<Row>(conn)
        .optional()?
        .map(from_row)
        .transpose()
}

/// A customer's groups by name.
pub(crate) fn of_node(conn: &mut DbConnection, node: NodeId) -> QueryResult<Vec<Group>> {
    mailbox_groups::table
        .filter(mailbox_groups::node_id.eq(node.to_string()))
        .select(COLUMNS)
        .order(mailbox_groups::name)
        .load::<Row>(conn)?
        .into_iter()
        .map(from_row)
        .collect()
}

pub(crate) fn name_exists(conn: &mut DbConnection, node: NodeId, name: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        mailbox_groups::table
            .filter(mailbox_groups::node_id.eq(node.to_string()))
            .filter(mailbox_groups::name.eq(name)),
    ))
    .get_result(conn)
}

pub(crate) fn insert(conn: &mut DbConnection, group: &Group) -> QueryResult<()> {
    diesel::insert_into(mailbox_groups::table)
        .values((
            mailbox_groups::id.eq(group.id.to_string()),
            mailbox_groups::node_id.eq(group.node_id.to_string()),
            mailbox_groups::name.eq(&group.name),
            mailbox_groups::created_at.eq(group.created_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes a group and its memberships.
pub(crate) fn delete(conn: &mut DbConnection, id: GroupId) -> QueryResult<()> {
    diesel::delete(group_members::table.filter(group_members::group_id.eq(id.to_string())))
        .execute(conn)?;
    diesel::delete(mailbox_groups::table.find(id.to_string())).execute(conn)?;
    Ok(())
}

/// The members' mailbox ids and addresses, by address.
pub(crate) fn members(conn: &mut DbConnection, id: GroupId) -> QueryResult<Vec<(String, String)>> {
    group_members::table
        .inner_join(mailboxes::table)
        .filter(group_members::group_id.eq(id.to_string()))
        .select((mailboxes::id, mailboxes::address))
        .order(mailboxes::address)
        .load(conn)
}

/// Adds a member; adding one twice changes nothing. Returns whether it was added.
pub(crate) fn add_member(
    conn: &mut DbConnection,
    id: GroupId,
    mailbox: MailboxId,
) -> QueryResult<bool> {
    let key = (id.to_string(), mailbox.to_string());
    let present: bool = diesel::select(diesel::dsl::exists(
        group_members::table.find((&key.0, &key.1)),
    ))
    .get_result(conn)?;
    if !present {
        diesel::insert_into(group_members::table)
            .values((
                group_members::group_id.eq(&key.0),
                group_members::mailbox_id.eq(&key.1),
            ))
            .execute(conn)?;
    }
    Ok(!present)
}

/// Removes a member; returns whether it was one.
pub(crate) fn remove_member(
    conn: &mut DbConnection,
    id: GroupId,
    mailbox: MailboxId,
) -> QueryResult<bool> {
    Ok(
        diesel::delete(group_members::table.find((id.to_string(), mailbox.to_string())))
            .execute(conn)?
            > 0,
    )
}

/// Drops a mailbox from every group, before it is deleted.
pub(crate) fn forget_mailbox(conn: &mut DbConnection, mailbox: MailboxId) -> QueryResult<usize> {
    diesel::delete(group_members::table.filter(group_members::mailbox_id.eq(mailbox.to_string())))
        .execute(conn)
}
