//! GraphiQL at `GET /graphql`, served entirely by the bridge.
//!
//! The page and every script and stylesheet it loads come from the bridge
//! (`/graphql/assets/*`), never from a CDN: a sovereign or offline install
//! reaches no outside host. The assets are the prebuilt browser bundles of
//! pinned npm packages (GraphiQL's UMD build and React's), fetched and
//! checked against their published sha512 by `compose/graphiql`, and read
//! from that directory once, at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Where the page finds its assets.
pub const ASSETS_PATH: &str = "/graphql/assets";

/// The files the page loads, with their content types: what
/// `compose/graphiql dir` holds.
pub const ASSETS: [(&str, &str); 4] = [
    ("react.production.min.js", "text/javascript; charset=utf-8"),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    ("graphiql.min.js", "text/javascript; charset=utf-8"),
    ("graphiql.min.css", "text/css; charset=utf-8"),
];

/// The page: GraphiQL on `/graphql`, subscriptions over `/graphql/ws`
/// (graphql-transport-ws, which GraphiQL's bundle speaks), both on the
/// origin the page came from.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>FrameWorks GraphQL</title>
    <style>body { height: 100%; margin: 0; width: 100%; overflow: hidden; } #graphiql { height: 100vh; }</style>
    <link rel="stylesheet" href="/graphql/assets/graphiql.min.css">
    <script src="/graphql/assets/react.production.min.js"></script>
    <script src="/graphql/assets/react-dom.production.min.js"></script>
    <script src="/graphql/assets/graphiql.min.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL...</div>
    <script>
      const here = new URL('/graphql', window.location.href);
      const ws = new URL('/graphql/ws', window.location.href);
      ws.protocol = here.protocol === 'https:' ? 'wss:' : 'ws:';
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {
          fetcher: GraphiQL.createFetcher({ url: here.toString(), subscriptionUrl: ws.toString() }),
          defaultEditorToolsVisibility: true,
        })
      );
    </script>
  </body>
</html>
"#;

/// Why GraphiQL cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum GraphiqlError {
    #[error(
        "GraphiQL is on but no assets directory is set (FRAMEWORKS_BRIDGE_GRAPHIQL_ASSETS; `compose/graphiql dir` fetches it)"
    )]
    NoAssets,
    #[error("reading GraphiQL's {file} from {dir} (`compose/graphiql dir` fetches it)")]
    Unreadable {
        dir: PathBuf,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// GraphiQL's assets, read once.
#[derive(Debug, Clone)]
pub struct Graphiql {
    files: Arc<[(&'static str, &'static str, Bytes)]>,
}

impl Graphiql {
    /// Reads every file of [`ASSETS`] from `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Self, GraphiqlError> {
        let dir = dir.ok_or(GraphiqlError::NoAssets)?;
        let files = ASSETS
            .iter()
            .map(|&(file, content_type)| {
                std::fs::read(dir.join(file))
                    .map(|bytes| (file, content_type, Bytes::from(bytes)))
                    .map_err(|source| GraphiqlError::Unreadable {
                        dir: dir.to_owned(),
                        file,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            files: files.into(),
        })
    }

    /// `GET /graphql/assets/{file}`; the page itself is [`page`].
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let assets = self.clone();
        Router::new().route(
            &format!("{ASSETS_PATH}/{{file}}"),
            get(move |UrlPath(file): UrlPath<String>| {
                let assets = assets.clone();
                async move { assets.serve(&file) }
            }),
        )
    }

    fn serve(&self, file: &str) -> Response {
        match self.files.iter().find(|(name, _, _)| *name == file) {
            Some((_, content_type, bytes)) => (
                [
                    (header::CONTENT_TYPE, *content_type),
                    // Pinned versions: a file's bytes never change under its name.
                    (header::CACHE_CONTROL, "public, max-age=86400"),
                ],
                bytes.clone(),
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
}

/// The GraphiQL page.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `src` and `href` of the page is a path on the bridge, and names
    /// one of the assets it serves.
    #[test]
    fn the_page_loads_nothing_from_another_host() {
        let references: Vec<&str> = PAGE
            .split(['"', '\''])
            .skip(1)
            .step_by(2)
            .filter(|value| value.starts_with('/') || value.contains("//"))
            .collect();
        assert!(!references.is_empty());
        for reference in references {
            assert!(
                !reference.contains("//") && reference.starts_with('/'),
                "{reference} is not on the bridge"
            );
        }
        for (file, _) in ASSETS {
            assert!(
                PAGE.contains(&format!("{ASSETS_PATH}/{file}")),
                "{file} unused"
            );
        }
    }

    #[test]
    fn missing_assets_are_named() {
        let error = Graphiql::load(None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("FRAMEWORKS_BRIDGE_GRAPHIQL_ASSETS")
        );
        let dir = std::env::temp_dir().join(format!("graphiql-{}", uuid::Uuid::now_v7()));
        let error = Graphiql::load(Some(&dir)).unwrap_err();
        assert!(matches!(
            error,
            GraphiqlError::Unreadable {
                file: "react.production.min.js",
                ..
            }
        ));
    }
}
