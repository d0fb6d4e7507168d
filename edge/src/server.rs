//! The HTTP endpoint Mist posts its triggers to (`POST /trigger/<NAME>`).
//!
//! Every request is parsed whole first; a malformed one gets a 400 naming
//! the problem (413 when oversize) and is counted. An accounting trigger is
//! written to the durable [`Journal`] before Mist is answered; if that
//! fails the answer is a 503 and the failure is logged (Mist never retries
//! an asynchronous trigger). A blocking trigger is answered from
//! [`Answers`] within its budget. Every accepted trigger is handed to the
//! forwarder, which sends it to the balancer's ingress.
//!
//! Mist writes an asynchronous trigger and closes its socket without
//! reading the answer. [`serve`] reads such a request to its end and
//! handles it all the same (HTTP/1 half-close), and the handler's work
//! runs in a task of its own, so that nothing read is dropped halfway.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics::counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use crate::answers::{Action, Answers, Resolver};
use crate::journal::{Journal, JournalEntry};
use crate::sessions::SessionStreams;
use frameworks_edge_protocol::triggers::{
    MAX_BODY_BYTES, TriggerError, TriggerKind, TriggerRequest,
};

/// What the trigger endpoint needs.
#[derive(Debug)]
pub struct TriggerEndpoint<R> {
    pub answers: Arc<Answers<R>>,
    pub journal: Journal,
    /// Accepted triggers, on their way to the ingress.
    pub forward: mpsc::Sender<JournalEntry>,
    /// The streams of the sessions USER_NEW admitted, for the USER_END
    /// that names none.
    pub sessions: SessionStreams,
}

impl<R: Resolver> TriggerEndpoint<R> {
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/trigger/{name}", post(receive::<R>))
            // The limit is applied while reading, so that oversize bodies are counted.
            .layer(DefaultBodyLimit::disable())
            .with_state(self)
    }
}

/// How long connections still open at shutdown get to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// open connections finish (within `DRAIN`). Unlike `axum::serve`, a
/// peer that closes its side right after writing its request still has
/// that request read and handled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone(), stopping.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: pause, then go on.
                    warn!(%error, "could not accept a trigger connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "trigger connections still open at shutdown"
        );
    }
    Ok(())
}

async fn serve_connection(stream: TcpStream, router: Router, mut stopping: watch::Receiver<bool>) {
    let connection = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        // Mist's closed sockets end most connections this way.
        debug!(%error, "trigger connection ended");
    }
}

fn refuse(error: &TriggerError) -> Response {
    counter!("frameworks_edge_triggers_rejected_total", "reason" => error.label()).increment(1);
    warn!(%error, "refused a trigger request");
    let status = if *error == TriggerError::TooLarge {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, format!("{error}\n")).into_response()
}

/// Hands a trigger to the forwarder. Accounting triggers are safe in the
/// journal (the forwarder sends whatever it still holds); others are
/// dropped, counted, under overload.
fn forward(forward: &mpsc::Sender<JournalEntry>, entry: JournalEntry) {
    let trigger = entry.kind().map_or("unknown", TriggerKind::name);
    if forward.try_send(entry).is_err() {
        counter!("frameworks_edge_triggers_unforwarded_total", "trigger" => trigger).increment(1);
    }
}

async fn receive<R: Resolver>(
    State(endpoint): State<Arc<TriggerEndpoint<R>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return refuse(&TriggerError::TooLarge);
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request = match TriggerRequest::parse(header, &body) {
        Ok(request) => request,
        Err(error) => return refuse(&error),
    };
    // Mist writes an asynchronous trigger and closes the socket without
    // reading the answer, and hyper then drops this future. The work runs
    // in a task of its own so that a trigger once read is journaled,
    // counted and forwarded whether or not anyone waits for the answer.
    let body = String::from_utf8_lossy(&body).into_owned();
    match tokio::spawn(handle(endpoint, request, body)).await {
        Ok(response) => response,
        Err(failed) => {
            error!(error = %failed, "a trigger handler failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "trigger handler failed\n",
            )
                .into_response()
        }
    }
}

async fn handle<R: Resolver>(
    endpoint: Arc<TriggerEndpoint<R>>,
    request: TriggerRequest,
    body: String,
) -> Response {
    let kind = request.meta.kind;
    counter!("frameworks_edge_triggers_total", "trigger" => kind.name()).increment(1);
    let mut entry = JournalEntry::new(&request.meta, &body);
    if kind == TriggerKind::UserEnd {
        endpoint.sessions.ended(&mut entry.fields);
    }
    if kind.accounting() {
        let journal = endpoint.journal.clone();
        let durable = entry.clone();
        let written = tokio::task::spawn_blocking(move || journal.append(&durable)).await;
        match written {
            // Mist sends a trigger again (same UUID, `X-Attempt` 2) when its
            // socket failed while sending: journaled once, counted apart.
            Ok(Ok(true)) => {
                counter!("frameworks_edge_triggers_journaled_total", "trigger" => kind.name())
                    .increment(1);
            }
            Ok(Ok(false)) => {
                counter!("frameworks_edge_triggers_repeated_total", "trigger" => kind.name())
                    .increment(1);
            }
            Ok(Err(failure)) => {
                error!(error = %failure, trigger = %kind, "could not journal an accounting trigger");
                return (StatusCode::SERVICE_UNAVAILABLE, "journal unavailable\n").into_response();
            }
            Err(panicked) => {
                error!(error = %panicked, trigger = %kind, "journal writer failed");
                return (StatusCode::SERVICE_UNAVAILABLE, "journal unavailable\n").into_response();
            }
        }
    }
    if !kind.blocking() {
        forward(&endpoint.forward, entry);
        return (StatusCode::OK, "true").into_response();
    }
    let answer = endpoint.answers.answer(kind, &request.trigger).await;
    // The platform learns what was let through (a push's stream, a viewer admitted).
    if answer.action == Action::Value {
        entry.answer = Some(answer.body.clone());
        if kind == TriggerKind::UserNew && answer.body == "true" {
            endpoint.sessions.admitted(&entry.fields);
        }
    }
    forward(&endpoint.forward, entry);
    let mut response = (StatusCode::OK, answer.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "X-Mist-Trigger-Action",
        HeaderValue::from_static(answer.action.header()),
    );
    if let Some(reason) = answer.reason.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert("X-Mist-Trigger-Reason", reason);
    }
    response
}
