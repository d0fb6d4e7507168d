//! `serverInfo`: what this server is and ships, readable without signing in.

use async_graphql::{Object, SimpleObject};

/// Product features this server ships, as sorted slugs. A feature is listed
/// once every operation of the client for it is served.
pub const FEATURES: [&str; 5] = [
    "api-tokens",
    "signing-keys",
    "stream-keys",
    "streams",
    "subscriptions",
];

#[derive(Debug, Clone, SimpleObject)]
pub struct ServerInfo {
    /// Platform release version, for example v0.3.11.
    pub version: String,
    /// Sorted slugs of shipped product features.
    pub features: Vec<String>,
}

#[derive(Debug, Default)]
pub struct ServerInfoQuery;

#[Object]
impl ServerInfoQuery {
    /// Platform release and shipped product features. Readable without
    /// authentication so clients can detect what this server supports.
    async fn server_info(&self) -> ServerInfo {
        ServerInfo {
            version: format!("v{}", env!("CARGO_PKG_VERSION")),
            features: FEATURES.iter().map(|&f| f.to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FEATURES;

    #[test]
    fn features_are_sorted_slugs() {
        let mut sorted = FEATURES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, FEATURES);
        assert!(
            FEATURES
                .iter()
                .all(|f| f.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }
}
