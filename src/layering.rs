//! Guards on how the crates are layered, read from the sources themselves
//! (as the metrics catalogue's test reads them):
//!
//! - the gateways (bridge, balancer) read the read models only through
//!   `frameworks_projections::queries` and `frameworks_projections::live`:
//!   no SQL, no ClickHouse query and no live-state Redis key of their own;
//! - neither gateway depends on the edge daemon crate (the edge protocol
//!   has its own);
//! - the bridge's GraphQL stays in files of at most [`MAX_GRAPHQL_LINES`].

use std::path::{Path, PathBuf};

/// The longest a file of the bridge's GraphQL module may grow before it is
/// split by job (types, inputs, queries, mutations, read).
const MAX_GRAPHQL_LINES: usize = 600;

/// What only a read model's query layer writes: SQL (through sqlx or by
/// keyword), ClickHouse queries, and the live state's Redis key names.
const READ_MODEL_ACCESS: &[&str] = &[
    "sqlx::query",
    "query_as(",
    "query_scalar(",
    "QueryBuilder",
    "AssertSqlSafe",
    "read_models.",
    "SELECT ",
    "INSERT INTO",
    "DELETE FROM",
    "FROM node_metrics",
    // The live state's keys as its writer formats them: `{prefix}:stream:{id}`.
    "}:stream:",
    "}:streams:live",
    "}:node:",
    "}:nodes:live",
];

fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The Rust files under `dir`, in a stable order.
fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Each line of `source` that is code, not a comment, with its number.
fn code_lines(source: &str) -> impl Iterator<Item = (usize, &str)> {
    source
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_start()))
        .filter(|(_, line)| !line.starts_with("//"))
}

#[test]
fn the_gateways_read_the_read_models_only_through_their_query_layer() {
    let repo = repo();
    let mut files = Vec::new();
    for dir in ["gateways/bridge/src", "gateways/balancer/src"] {
        rust_files(&repo.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} gateway files", files.len());
    let mut found = Vec::new();
    for path in &files {
        let source = read(path);
        for (number, line) in code_lines(&source) {
            for token in READ_MODEL_ACCESS {
                if line.contains(token) {
                    let file = path.strip_prefix(&repo).unwrap_or(path).display();
                    found.push(format!("{file}:{number}: {token}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "read-model access outside frameworks_projections::queries:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_guard_sees_read_model_access_where_there_is_some() {
    // The query layer and the live state's reader are where the SQL and
    // the keys are: the guard must see them there.
    let hits = |file: &str| {
        let source = read(&repo().join(file));
        code_lines(&source)
            .filter(|(_, line)| READ_MODEL_ACCESS.iter().any(|t| line.contains(t)))
            .count()
    };
    let sql = hits("projections/src/queries/streams.rs");
    assert!(
        sql >= 5,
        "the guard saw {sql} lines of SQL in the query layer"
    );
    let keys = hits("projections/src/live.rs");
    assert!(
        keys >= 4,
        "the guard saw {keys} live-state key names in their reader"
    );
}

#[test]
fn no_gateway_depends_on_the_edge_daemon() {
    for manifest in ["gateways/bridge/Cargo.toml", "gateways/balancer/Cargo.toml"] {
        let text = read(&repo().join(manifest));
        let dependencies: Vec<&str> = text
            .lines()
            .map(|line| line.split(['.', '=', ' ']).next().unwrap_or_default())
            .filter(|name| name.starts_with("frameworks-"))
            .collect();
        assert!(
            !dependencies.contains(&"frameworks-edge"),
            "{manifest} depends on the edge daemon: {dependencies:?}"
        );
    }
}

#[test]
fn graphql_files_stay_small() {
    let repo = repo();
    let mut files = Vec::new();
    rust_files(&repo.join("gateways/bridge/src/graphql"), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|path| (path, read(path).lines().count()))
        .filter(|(_, lines)| *lines > MAX_GRAPHQL_LINES)
        .map(|(path, lines)| {
            format!(
                "{}: {lines} lines",
                path.strip_prefix(&repo).unwrap_or(path).display()
            )
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by job (types, inputs, queries, mutations, read): {long:?}"
    );
}
