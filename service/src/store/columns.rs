//! One way to read a row's columns by name, whichever driver returned it:
//! sqlx's `AnyRow` (every query) or rusqlite's `Row` (the SQLite hot path,
//! crate::store::direct). A row type is decoded once, by a function generic
//! over [`Columns`], so the two paths cannot drift apart.

use super::StoreResult;
use sqlx::any::AnyRow;

/// A value both drivers decode the same way.
pub(crate) trait Column:
    for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + rusqlite::types::FromSql
{
}

impl<T> Column for T where T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + rusqlite::types::FromSql {}

pub(crate) trait Columns {
    /// The named column, or the driver's error when it is missing or of another type.
    fn column<T: Column>(&self, name: &str) -> StoreResult<T>;
}

impl Columns for AnyRow {
    fn column<T: Column>(&self, name: &str) -> StoreResult<T> {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn column<T: Column>(&self, name: &str) -> StoreResult<T> {
        Ok(self.get(name)?)
    }
}

/// A row type decoded from either driver's row.
pub(crate) trait FromColumns: Sized {
    fn from_columns(row: &impl Columns) -> StoreResult<Self>;
}
