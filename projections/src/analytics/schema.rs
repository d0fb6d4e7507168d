//! The analytics DDL (`schemas/clickhouse/analytics.sql`), applied into one
//! generation's database.

use clickhouse::Client;

/// The DDL, embedded so that the binary carries the schema it writes.
pub const DDL: &str = include_str!("../../../schemas/clickhouse/analytics.sql");

/// The file's statements, without comments.
pub fn statements() -> Vec<String> {
    let code: String = DDL
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` can be used unquoted as a ClickHouse database name.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// Creates `database` and every table and view in it; a second run changes nothing.
pub async fn create(client: &Client, database: &str) -> Result<(), clickhouse::error::Error> {
    debug_assert!(is_identifier(database));
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await?;
    let scoped = client.clone().with_database(database);
    for statement in statements() {
        scoped.query(&statement).execute().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_creates_something_idempotently() {
        let statements = statements();
        assert_eq!(statements.len(), 11);
        for statement in &statements {
            assert!(
                statement.starts_with("CREATE TABLE IF NOT EXISTS")
                    || statement.starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS"),
                "{statement}"
            );
            assert!(!statement.contains('?'), "bind placeholder in DDL");
        }
    }

    #[test]
    fn database_names_are_plain_identifiers() {
        assert!(is_identifier("frameworks_g2"));
        assert!(!is_identifier("frameworks; DROP"));
        assert!(!is_identifier("2fast"));
        assert!(!is_identifier(""));
    }
}
