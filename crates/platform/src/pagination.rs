//! Cursor pagination over UUIDv7 ids: ids sort by creation time, so the cursor is the last id seen,
//! encoded opaquely, and a page is `WHERE id > $cursor ORDER BY id LIMIT $limit + 1`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::problem::FieldError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// `?limit=&cursor=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The paging parameters of a query, their field errors added to `errors` (handlers collect every
    /// field error of a request before answering).
    pub fn checked(
        limit: Option<u32>,
        cursor: Option<String>,
        errors: &mut Vec<FieldError>,
    ) -> Self {
        let params = Self { limit, cursor };
        errors.extend(params.errors());
        params
    }

    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    /// Field errors of the paging parameters.
    pub fn errors(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !(1..=MAX_LIMIT).contains(&self.limit()) {
            errors.push(FieldError::new(
                "limit",
                "OUT_OF_RANGE",
                "must be between 1 and 100",
            ));
        }
        if self
            .cursor
            .as_deref()
            .is_some_and(|c| decode_cursor(c).is_none())
        {
            errors.push(FieldError::new(
                "cursor",
                "INVALID_FORMAT",
                "is not a cursor this API returned",
            ));
        }
        errors
    }

    /// The id to start after, if a cursor was given (call after [`PageParams::errors`] came back empty).
    pub fn after(&self) -> Option<Uuid> {
        self.cursor.as_deref().and_then(decode_cursor)
    }
}

/// A page of results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// No results and no next page.
    pub fn empty() -> Self {
        Self {
            data: Vec::new(),
            next_cursor: None,
        }
    }

    /// Builds a page from up to `limit + 1` rows fetched in id order: the extra row proves a next page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> Uuid) -> Self {
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|row| encode_cursor(id_of(row)))
        } else {
            None
        };
        Self {
            data: rows,
            next_cursor,
        }
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_has_a_cursor_to_its_last_row() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_rows(ids.clone(), 3, |id| *id);
        assert_eq!(page.data, ids[..3]);
        assert_eq!(
            page.next_cursor.as_deref().and_then(decode_cursor),
            Some(ids[2])
        );
        let last = Page::from_rows(ids[..2].to_vec(), 3, |id| *id);
        assert!(last.next_cursor.is_none());
    }

    #[test]
    fn bad_paging_parameters_are_named() {
        let params = PageParams {
            limit: Some(101),
            cursor: Some("!!".into()),
        };
        let fields: Vec<String> = params.errors().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["limit", "cursor"]);
    }
}
