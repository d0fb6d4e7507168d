//! Relay connections: `page: ConnectionInput`, `edges` and `nodes`,
//! `pageInfo`, `totalCount`, opaque cursors. The paging itself (newest
//! first on (created_at, id), by keyset) is the read models' own:
//! [`frameworks_projections::queries::page`].

use async_graphql::{InputObject, SimpleObject};
pub use frameworks_projections::queries::page::{Page, PageBounds, Paged, Position};

use super::errors::{bad_input, internal};

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 500;

#[derive(Debug, Clone, Default, InputObject)]
pub struct ConnectionInput {
    /// Number of items to fetch (forward pagination). Default: 50, Max: 500.
    #[graphql(default_with = "Some(DEFAULT_PAGE)")]
    pub first: Option<i32>,
    /// Cursor to start fetching after (forward pagination).
    pub after: Option<String>,
    /// Number of items to fetch (backward pagination).
    pub last: Option<i32>,
    /// Cursor to start fetching before (backward pagination).
    pub before: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

impl From<PageBounds> for PageInfo {
    fn from(bounds: PageBounds) -> Self {
        Self {
            start_cursor: bounds.start_cursor,
            end_cursor: bounds.end_cursor,
            has_next_page: bounds.has_next_page,
            has_previous_page: bounds.has_previous_page,
        }
    }
}

/// The page a `ConnectionInput` asks for, validated: sizes within
/// 0..=[`MAX_PAGE`], one direction, cursors this server issued.
pub fn page_of(input: Option<&ConnectionInput>) -> async_graphql::Result<Page> {
    let input = input.cloned().unwrap_or_default();
    let size = |field: &str, n: i32| {
        if (0..=MAX_PAGE).contains(&n) {
            Ok(i64::from(n))
        } else {
            Err(bad_input(
                field,
                &format!("must be between 0 and {MAX_PAGE}"),
            ))
        }
    };
    let anchor = |field: &str, cursor: Option<&str>| {
        cursor
            .map(|c| {
                Position::parse(c)
                    .ok_or_else(|| bad_input(field, "is not a cursor this server issued"))
            })
            .transpose()
    };
    if input.last.is_some() || input.before.is_some() {
        if input.after.is_some() {
            return Err(bad_input(
                "page",
                "cannot combine after with before or last",
            ));
        }
        return Ok(Page::new(
            size("page.last", input.last.unwrap_or(DEFAULT_PAGE))?,
            true,
            anchor("page.before", input.before.as_deref())?,
        ));
    }
    Ok(Page::new(
        size("page.first", input.first.unwrap_or(DEFAULT_PAGE))?,
        false,
        anchor("page.after", input.after.as_deref())?,
    ))
}

/// Turns a query's failure into the API's internal error (logged there).
pub fn read_failed(error: sqlx::Error) -> async_graphql::Error {
    internal(&error)
}

/// Declares a connection and its edge type for `$node`.
macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        #[derive(Debug, Clone, async_graphql::SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        #[derive(Debug, Clone, async_graphql::SimpleObject)]
        pub struct $connection {
            pub edges: Vec<$edge>,
            pub nodes: Vec<$node>,
            pub page_info: $crate::graphql::connection::PageInfo,
            pub total_count: i32,
        }

        impl $connection {
            pub fn new(paged: frameworks_projections::queries::page::Paged<$node>) -> Self {
                let frameworks_projections::queries::page::Paged {
                    edges,
                    bounds,
                    total: total_count,
                } = paged;
                Self {
                    nodes: edges.iter().map(|(_, node)| node.clone()).collect(),
                    edges: edges
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info: bounds.into(),
                    total_count: i32::try_from(total_count).unwrap_or(i32::MAX),
                }
            }
        }
    };
}
pub(crate) use connection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded_cursors_checked_and_directions_exclusive() {
        let ask = |input: ConnectionInput| page_of(Some(&input));
        for first in [501, -1] {
            assert!(
                ask(ConnectionInput {
                    first: Some(first),
                    ..Default::default()
                })
                .is_err()
            );
        }
        assert!(
            ask(ConnectionInput {
                first: Some(500),
                ..Default::default()
            })
            .is_ok()
        );
        assert!(
            ask(ConnectionInput {
                after: Some("bm9wZQ==".into()),
                ..Default::default()
            })
            .is_err()
        );
        let cursor = Position {
            created_at: chrono::Utc::now(),
            id: "x".into(),
        }
        .cursor();
        assert!(
            ask(ConnectionInput {
                after: Some(cursor.clone()),
                before: Some(cursor),
                ..Default::default()
            })
            .is_err()
        );
    }
}
