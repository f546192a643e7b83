//! The module catalogue, as far as the allocation engine needs it: which module resources exist.

use diesel::prelude::*;

use super::DbConnection;
use super::schema::modules;
use crate::domain::resource::Resource;

/// Every resource the catalogue knows: `users`, `domains`, then `module:<code>` by code.
pub fn resources(conn: &mut DbConnection) -> QueryResult<Vec<Resource>> {
    let codes: Vec<String> = modules::table
        .select(modules::code)
        .order(modules::code)
        .load(conn)?;
    Ok([Resource::Users, Resource::Domains]
        .into_iter()
        .chain(codes.into_iter().map(Resource::Module))
        .collect())
}

/// Whether `resource` exists: `users` and `domains` always, a module when the catalogue has it.
pub fn exists(conn: &mut DbConnection, resource: &Resource) -> QueryResult<bool> {
    match resource.module_code() {
        None => Ok(true),
        Some(code) => {
            diesel::select(diesel::dsl::exists(modules::table.find(code))).get_result(conn)
        }
    }
}
