//! The bridge's HTTP surface: POST /graphql, subscriptions over
//! graphql-transport-ws at /graphql/ws, GraphiQL at GET /graphql when
//! enabled, /auth/register and /auth/login, and /metrics (the role adds
//! /health, which knows its supervised tasks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::Executor;
use async_graphql::http::{WebSocketProtocols as Protocols, WsMessage};
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use metrics::{counter, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::auth::{Principal, rest};
use crate::graphiql::Graphiql;
use crate::graphql;
use crate::graphql::endpoints::RequestOrigin;
use crate::graphql::executor::BridgeExecutor;
use crate::graphql::mutation::RequestKey;
use crate::state::BridgeState;

/// Root query fields anonymous callers may use.
const PUBLIC_QUERY_FIELDS: [&str; 7] = [
    "serverInfo",
    "networkStatus",
    "resolveViewerEndpoint",
    "resolveIngestEndpoint",
    "__typename",
    "__schema",
    "__type",
];

/// Root mutation fields anonymous callers may use: each carries its own
/// credential in its input (bootstrapEdge: an enrolment token).
const PUBLIC_MUTATION_FIELDS: [&str; 2] = ["bootstrapEdge", "__typename"];

#[derive(Clone)]
struct App {
    state: Arc<BridgeState>,
    executor: BridgeExecutor,
    metrics: PrometheusHandle,
}

/// Every route of the bridge.
pub fn router(
    state: Arc<BridgeState>,
    metrics: PrometheusHandle,
    graphiql: Option<Graphiql>,
    max_body_bytes: usize,
) -> Router {
    let app = App {
        executor: BridgeExecutor::new(graphql::build(state.clone())),
        state: state.clone(),
        metrics,
    };
    let mut graphql_routes = post(graphql_post);
    let mut assets = Router::new();
    if let Some(graphiql) = graphiql {
        graphql_routes = graphql_routes.get(crate::graphiql::page);
        assets = graphiql.router();
    }
    let auth = Router::new()
        .route("/auth/register", post(rest::register))
        .route("/auth/login", post(rest::login))
        .with_state(state);
    Router::new()
        .route("/graphql", graphql_routes)
        .route("/graphql/ws", get(graphql_ws))
        .route("/metrics", get(render_metrics))
        .with_state(app)
        .merge(auth)
        .merge(assets)
        .layer(DefaultBodyLimit::max(max_body_bytes))
}

async fn render_metrics(State(app): State<App>) -> String {
    app.metrics.render()
}

/// A GraphQL-shaped error response: `{"errors": [{message, extensions: {code}}]}`.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

async fn graphql_post(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let response = execute(&app, peer, &headers, &body).await;
    let status = response.status().as_u16().to_string();
    counter!("frameworks_bridge_requests_total", "status" => status).increment(1);
    histogram!("frameworks_bridge_request_seconds").record(started.elapsed().as_secs_f64());
    response
}

async fn execute(app: &App, peer: SocketAddr, headers: &HeaderMap, body: &[u8]) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {error}"),
            );
        }
    };
    // Authenticate first: the document is parsed a second time, to see
    // whether it is public, only for requests without a valid credential.
    let credential = headers.get(header::AUTHORIZATION).map(HeaderValue::to_str);
    let principal = match credential {
        Some(Ok(value)) => app
            .state
            .auth
            .authenticate(value)
            .await
            .map_err(|e| e.to_string()),
        Some(Err(_)) => Err("the Authorization header is not valid text".to_owned()),
        None => Err(
            "authentication required: send Authorization: Bearer <session or API token>".to_owned(),
        ),
    };
    let principal = match principal {
        Ok(principal) => Some(principal),
        // A public request ignores a missing or bad credential.
        Err(_) if is_public(&request) => None,
        Err(message) => {
            return error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &message);
        }
    };
    let caller = principal.as_ref().map_or_else(
        || format!("anonymous:{}", peer.ip()),
        |p| match p {
            Principal::Session { user_id, .. } => format!("user:{user_id}"),
            Principal::ApiToken { token_id, .. } => format!("token:{token_id}"),
        },
    );
    if let Err(wait) = app.state.limiter.check(&caller) {
        let seconds = wait.as_secs().max(1);
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            &format!("too many requests; retry in {seconds}s"),
        );
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let mut request = request.data(RequestOrigin {
        ip: peer.ip(),
        headers: headers.clone(),
    });
    if let Some(key) = headers.get("idempotency-key") {
        match RequestKey::parse(key.as_bytes()) {
            Ok(key) => request = request.data(key),
            Err(error) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "IDEMPOTENCY_KEY_INVALID",
                    &error.to_string(),
                );
            }
        }
    }
    let request = match principal {
        Some(principal) => request.data(principal),
        None => request,
    };
    axum::Json(app.executor.execute(request).await).into_response()
}

/// The subprotocol the client speaks; the credential comes in `connection_init`.
const WS_PROTOCOL: &str = "graphql-transport-ws";
/// Close code for a refused `connection_init` (the client does not retry it).
const WS_FORBIDDEN: u16 = 4403;
/// How a refused init is told apart from async-graphql's own protocol errors.
const WS_REFUSED: &str = "forbidden: connection_init needs a valid Authorization";

/// Each socket's read buffer. tungstenite's default, 128 KiB, is zeroed
/// again on every read: with 10,000 subscribers that was 40 % of the
/// bridge's CPU (and 1.3 GB of buffers). Client messages (init, subscribe,
/// ping) are small; a longer one is read in several passes.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

async fn graphql_ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .protocols([WS_PROTOCOL])
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| serve_ws(app, socket))
}

async fn serve_ws(app: App, socket: WebSocket) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| futures::future::ready(message.is_ok()))
        .filter_map(|message| async move {
            match message {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            }
        });
    let auth = app.state.auth.clone();
    let messages =
        async_graphql::http::WebSocket::new(app.executor.clone(), input, Protocols::GraphQLWS)
            .on_connection_init(move |payload| async move {
                let credential = payload
                    .get("Authorization")
                    .or_else(|| payload.get("authorization"))
                    .and_then(serde_json::Value::as_str);
                let principal = match credential {
                    Some(value) => auth.authenticate(value).await.ok(),
                    None => None,
                };
                let principal = principal.ok_or_else(|| async_graphql::Error::new(WS_REFUSED))?;
                let mut data = async_graphql::Data::default();
                data.insert(principal);
                counter!("frameworks_bridge_ws_connections_total").increment(1);
                Ok(data)
            });
    let mut messages = std::pin::pin!(messages);
    while let Some(message) = messages.next().await {
        let out = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => {
                let code = if code == 1002 && reason == WS_REFUSED {
                    WS_FORBIDDEN
                } else {
                    code
                };
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))
            }
        };
        if sink.send(out).await.is_err() {
            break;
        }
    }
}

/// Whether the request's operation touches public root fields only.
fn is_public(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    };
    let Some(operation) = operation else {
        return false;
    };
    let public: &[&str] = match operation.ty {
        OperationType::Query => &PUBLIC_QUERY_FIELDS,
        OperationType::Mutation => &PUBLIC_MUTATION_FIELDS,
        OperationType::Subscription => return false,
    };
    operation
        .selection_set
        .node
        .items
        .iter()
        .all(|item| match &item.node {
            Selection::Field(field) => public.contains(&field.node.name.node.as_str()),
            // Spreads at the root could hide anything: not public.
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(query: &str, operation: Option<&str>) -> bool {
        let mut request = async_graphql::Request::new(query);
        if let Some(name) = operation {
            request = request.operation_name(name);
        }
        is_public(&request)
    }

    #[test]
    fn only_public_root_fields_pass_without_credentials() {
        assert!(public(
            "query ServerInfo { serverInfo { version features } }",
            None
        ));
        assert!(public("{ __typename }", None));
        assert!(public(
            "mutation B($i: BootstrapEdgeInput!) { bootstrapEdge(input: $i) { __typename } }",
            None
        ));
        assert!(!public(
            "mutation { bootstrapEdge(input: {token: \"t\"}) { __typename } createStream(input: {name: \"x\"}) { __typename } }",
            None
        ));
        assert!(!public("query { bootstrapEdge }", None));
        assert!(!public(
            "{ serverInfo { version } streamsConnection { totalCount } }",
            None
        ));
        assert!(!public(
            "mutation { deleteStream(id: \"x\") { __typename } }",
            None
        ));
        assert!(!public(
            "query A { serverInfo { version } } query B { stream(id: \"x\") { id } }",
            Some("B")
        ));
        assert!(public(
            "query A { serverInfo { version } } query B { stream(id: \"x\") { id } }",
            Some("A")
        ));
        assert!(!public(
            "{ ...F } fragment F on Query { streamsConnection { totalCount } }",
            None
        ));
        assert!(!public("{ not graphql", None));
    }
}
