//! Keyset paging of the supervisor lists: the page size, and the cursor of the next page.

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// The page size asked for, checked.
pub fn page_limit(limit: Option<i64>) -> AppResult<i64> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) if (1..=MAX_PAGE).contains(&l) => Ok(l),
        Some(_) => Err(AppError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// The `next_after` of a keyset page: the key of its last item when more items follow
/// (`more`: the query found one beyond the page), else `None`.
pub fn next_after<T, K>(more: bool, items: &[T], key: impl FnOnce(&T) -> K) -> Option<K> {
    if more {
        items.last().map(key)
    } else {
        None
    }
}
