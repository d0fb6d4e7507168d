//! Keyset paging of read-model lists, newest first on (created_at, id), so
//! a page is stable while rows arrive. A position is carried between pages
//! as an opaque cursor; the gateways put the pages into their own shapes
//! (the bridge: Relay connections).

use chrono::{DateTime, Utc};
use data_encoding::BASE64;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder};

/// A row's position in a list: what its cursor encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl Position {
    pub fn cursor(&self) -> String {
        BASE64
            .encode(format!("tu:{}:id:{}", self.created_at.timestamp_micros(), self.id).as_bytes())
    }

    /// The position a cursor of [`Position::cursor`] encodes; `None` for
    /// anything else.
    pub fn parse(cursor: &str) -> Option<Self> {
        let bytes = BASE64.decode(cursor.as_bytes()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.strip_prefix("tu:")?.split_once(":id:")?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// Where a page sits among its neighbours: what Relay calls page info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBounds {
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

/// One page of rows in display order, each with its cursor, and how many
/// rows the whole list holds.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub edges: Vec<(String, T)>,
    pub bounds: PageBounds,
    pub total: i64,
}

impl<T> Paged<T> {
    /// The same page with each row turned into something else.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        let mut f = f;
        Paged {
            edges: self.edges.into_iter().map(|(c, row)| (c, f(row))).collect(),
            bounds: self.bounds,
            total: self.total,
        }
    }
}

/// A page request: how many rows, which way, from where (exclusive).
#[derive(Debug, Clone)]
pub struct Page {
    limit: i64,
    backward: bool,
    anchor: Option<Position>,
}

impl Page {
    /// `limit` rows older than `anchor` (forward), or newer ones (backward).
    pub fn new(limit: i64, backward: bool, anchor: Option<Position>) -> Self {
        Self {
            limit: limit.max(0),
            backward,
            anchor,
        }
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
    fn push_sql(&self, query: &mut QueryBuilder<Postgres>, created_at: &str, id: &str) {
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
            .push_bind(self.fetch_limit());
    }

    /// Pages rows held in memory (newest first, as the SQL lists order them)
    /// exactly as a query is paged; [`Page::finish`] follows.
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
        rows.truncate(usize::try_from(self.fetch_limit()).unwrap_or(usize::MAX));
        rows
    }

    /// Puts fetched rows (in query order, one more than the page if there
    /// are more) into display order, with their cursors and the bounds.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        position: impl Fn(&T) -> Position,
        total: i64,
    ) -> Paged<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or_default());
        if self.backward {
            rows.reverse();
        }
        let edges: Vec<(String, T)> = rows
            .into_iter()
            .map(|row| (position(&row).cursor(), row))
            .collect();
        let bounds = PageBounds {
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
        Paged {
            edges,
            bounds,
            total,
        }
    }

    /// Counts the rows `filter` admits (its `WHERE ...`) and fetches this
    /// page of them.
    pub(crate) async fn fetch<R>(
        &self,
        pool: &PgPool,
        listing: Listing<'_>,
        filter: impl Fn(&mut QueryBuilder<Postgres>),
        position: impl Fn(&R) -> Position,
    ) -> Result<Paged<R>, sqlx::Error>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut count = QueryBuilder::new(format!("SELECT count(*) FROM {}", listing.from));
        filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
        let mut select =
            QueryBuilder::new(format!("SELECT {} FROM {}", listing.columns, listing.from));
        filter(&mut select);
        self.push_sql(&mut select, listing.created_at, listing.id);
        let rows: Vec<R> = select.build_query_as().fetch_all(pool).await?;
        Ok(self.finish(rows, position, total))
    }
}

/// What one listing selects, from where, and the columns it pages on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing<'a> {
    /// A table, or a join, to select from.
    pub from: &'a str,
    pub columns: &'a str,
    pub created_at: &'a str,
    pub id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let position = Position {
            created_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap_or_default(),
            id: "abc".into(),
        };
        assert_eq!(Position::parse(&position.cursor()), Some(position));
        assert_eq!(Position::parse("bm9wZQ=="), None);
        assert_eq!(Position::parse("%%%"), None);
    }

    #[test]
    fn a_page_knows_whether_more_follow() {
        // Microseconds, as the read models store time and cursors carry it.
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap_or_default();
        let position = |i: &i32| Position {
            created_at: at,
            id: format!("{i:03}"),
        };
        let forward = Page::new(50, false, None);
        let paged = forward.finish((0..51).rev().collect(), position, 51);
        assert_eq!(paged.edges.len(), 50);
        assert!(paged.bounds.has_next_page && !paged.bounds.has_previous_page);

        let anchor = Position::parse(&paged.edges[49].0);
        let rest = Page::new(50, false, anchor);
        let rows = rest.select((0..51).rev().collect(), position);
        let paged = rest.finish(rows, position, 51);
        assert_eq!(paged.edges.len(), 1);
        assert!(!paged.bounds.has_next_page && paged.bounds.has_previous_page);
    }
}
