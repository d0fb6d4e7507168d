//! Relay connections: `page: ConnectionInput`, `edges` and `nodes`,
//! `pageInfo`, `totalCount`, opaque cursors. Lists are ordered newest first
//! on (created_at, id) and paged by keyset, so a page is stable while rows arrive.

use async_graphql::{InputObject, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder};

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

/// A row's position in a list: what its cursor encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl Position {
    pub fn cursor(&self) -> String {
        STANDARD.encode(format!(
            "tu:{}:id:{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    fn parse(field: &str, cursor: &str) -> async_graphql::Result<Self> {
        let invalid = || bad_input(field, "is not a cursor this server issued");
        let text = STANDARD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(invalid)?;
        let rest = text.strip_prefix("tu:").ok_or_else(invalid)?;
        let (micros, id) = rest.split_once(":id:").ok_or_else(invalid)?;
        let created_at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        Ok(Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct Page {
    limit: i64,
    backward: bool,
    anchor: Option<Position>,
}

impl Page {
    pub fn from_input(input: Option<&ConnectionInput>) -> async_graphql::Result<Self> {
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
        if input.last.is_some() || input.before.is_some() {
            if input.after.is_some() {
                return Err(bad_input(
                    "page",
                    "cannot combine after with before or last",
                ));
            }
            return Ok(Self {
                limit: size("page.last", input.last.unwrap_or(DEFAULT_PAGE))?,
                backward: true,
                anchor: input
                    .before
                    .as_deref()
                    .map(|c| Position::parse("page.before", c))
                    .transpose()?,
            });
        }
        Ok(Self {
            limit: size("page.first", input.first.unwrap_or(DEFAULT_PAGE))?,
            backward: false,
            anchor: input
                .after
                .as_deref()
                .map(|c| Position::parse("page.after", c))
                .transpose()?,
        })
    }

    /// Where the page starts (exclusive), if a cursor was given.
    pub fn anchor(&self) -> Option<&Position> {
        self.anchor.as_ref()
    }

    /// Whether the page runs towards newer rows (`last`/`before`).
    pub fn backward(&self) -> bool {
        self.backward
    }

    /// Rows to fetch: one more than the page, to learn whether there are more.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Appends the keyset condition (after the caller's own `WHERE`), the
    /// order and the limit, on the columns `created_at` and `id` (the tie-break).
    pub fn push_sql(&self, query: &mut QueryBuilder<Postgres>, created_at: &str, id: &str) {
        if let Some(anchor) = &self.anchor {
            // Newest first: forward means older rows, backward newer ones.
            let op = if self.backward { ">" } else { "<" };
            query
                .push(format!(" AND ({created_at}, {id}::text) {op} ("))
                .push_bind(anchor.created_at)
                .push(", ")
                .push_bind(anchor.id.clone())
                .push(")");
        }
        let order = if self.backward { "ASC" } else { "DESC" };
        query
            .push(format!(
                " ORDER BY {created_at} {order}, {id}::text {order} LIMIT "
            ))
            .push_bind(self.limit + 1);
    }

    /// Pages rows held in memory (newest first, as the SQL lists order them)
    /// exactly as [`Page::push_sql`] pages a query; [`Page::finish`] follows.
    pub fn select<T>(&self, mut rows: Vec<T>, position: impl Fn(&T) -> Position) -> Vec<T> {
        if let Some(anchor) = &self.anchor {
            let anchor = (anchor.created_at, anchor.id.clone());
            rows.retain(|row| {
                let p = position(row);
                let key = (p.created_at, p.id);
                if self.backward {
                    key > anchor
                } else {
                    key < anchor
                }
            });
        }
        if self.backward {
            rows.reverse();
        }
        rows.truncate(usize::try_from(self.limit + 1).unwrap_or(usize::MAX));
        rows
    }

    /// Puts fetched rows (in query order, one more than the page if there
    /// are more) into display order, with the page info.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        position: impl Fn(&T) -> Position,
    ) -> (Vec<(String, T)>, PageInfo) {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or_default());
        if self.backward {
            rows.reverse();
        }
        let edges: Vec<(String, T)> = rows
            .into_iter()
            .map(|row| (position(&row).cursor(), row))
            .collect();
        let info = PageInfo {
            start_cursor: edges.first().map(|(c, _)| c.clone()),
            end_cursor: edges.last().map(|(c, _)| c.clone()),
            has_next_page: if self.backward {
                self.anchor.is_some()
            } else {
                more
            },
            has_previous_page: if self.backward {
                more
            } else {
                self.anchor.is_some()
            },
        };
        (edges, info)
    }
}

/// What one listing selects, from where, and the columns it pages on.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    /// A table, or a join, to select from.
    pub from: &'a str,
    pub columns: &'a str,
    pub created_at: &'a str,
    pub id: &'a str,
}

impl Page {
    /// Counts the rows `filter` admits (its `WHERE ...`) and fetches this
    /// page of them, in display order, with the page info and the total.
    pub async fn fetch<R>(
        &self,
        pool: &PgPool,
        listing: Listing<'_>,
        filter: impl Fn(&mut QueryBuilder<Postgres>),
        position: impl Fn(&R) -> Position,
    ) -> async_graphql::Result<(Vec<(String, R)>, PageInfo, i64)>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut count = QueryBuilder::new(format!("SELECT count(*) FROM {}", listing.from));
        filter(&mut count);
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(pool)
            .await
            .map_err(|e| internal(&e))?;
        let mut select =
            QueryBuilder::new(format!("SELECT {} FROM {}", listing.columns, listing.from));
        filter(&mut select);
        self.push_sql(&mut select, listing.created_at, listing.id);
        let rows: Vec<R> = select
            .build_query_as()
            .fetch_all(pool)
            .await
            .map_err(|e| internal(&e))?;
        let (edges, info) = self.finish(rows, position);
        Ok((edges, info, total))
    }
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
            pub fn new(
                edges: Vec<(String, $node)>,
                page_info: $crate::graphql::connection::PageInfo,
                total_count: i64,
            ) -> Self {
                Self {
                    nodes: edges.iter().map(|(_, node)| node.clone()).collect(),
                    edges: edges
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info,
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
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let position = Position {
            created_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap_or_default(),
            id: "abc".into(),
        };
        assert_eq!(
            Position::parse("after", &position.cursor()).ok(),
            Some(position)
        );
        assert!(Position::parse("after", "bm9wZQ==").is_err());
        assert!(Position::parse("after", "%%%").is_err());
    }

    #[test]
    fn page_sizes_are_bounded_and_directions_exclusive() {
        let page = |input: ConnectionInput| Page::from_input(Some(&input));
        assert!(
            page(ConnectionInput {
                first: Some(501),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            page(ConnectionInput {
                first: Some(-1),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            page(ConnectionInput {
                first: Some(500),
                ..Default::default()
            })
            .is_ok()
        );
        let position = Position {
            created_at: Utc::now(),
            id: "x".into(),
        };
        assert!(
            page(ConnectionInput {
                after: Some(position.cursor()),
                before: Some(position.cursor()),
                ..Default::default()
            })
            .is_err()
        );
        let forward = Page::from_input(None).unwrap_or_else(|_| unreachable!());
        let (edges, info) = forward.finish((0..51).collect(), |i| Position {
            created_at: Utc::now(),
            id: i.to_string(),
        });
        assert_eq!(edges.len(), 50);
        assert!(info.has_next_page && !info.has_previous_page);
    }
}
