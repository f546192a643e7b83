//! Values the installation makes for itself once and keeps (today: the embedded JWT signing key).

use diesel::prelude::*;

use super::DbConnection;
use super::schema::settings;

pub(crate) fn get(conn: &mut DbConnection, name: &str) -> QueryResult<Option<String>> {
    settings::table
        .find(name)
        .select(settings::value)
        .first(conn)
        .optional()
}

/// Returns the stored value of `name`, storing `make()` first if there is none. Runs in a write
/// transaction, so two instances starting at once on one database agree on a single value.
pub(crate) fn get_or_insert_with(
    conn: &mut DbConnection,
    name: &str,
    make: impl FnOnce() -> String,
) -> QueryResult<String> {
    super::write_tx(conn, |conn| {
        if let Some(value) = get(conn, name)? {
            return Ok(value);
        }
        let value = make();
        diesel::insert_into(settings::table)
            .values((settings::name.eq(name), settings::value.eq(&value)))
            .execute(conn)?;
        Ok(value)
    })
}
