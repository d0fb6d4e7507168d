//! A MistServer stand-in for tests and for the local stack: MistServer
//! cannot be installed here, so the edge daemon is tested against this.
//!
//! - [`captures`]: 248 trigger requests and the capabilities answer,
//!   captured from a real MistServer (fw-51c613a4);
//! - [`api`]: its HTTP API (`/api2`), loopback trust, the MD5 challenge
//!   login and the 403 that never ends;
//! - [`sender`]: triggers sent in Mist's exact wire format;
//! - [`scenes`]: realistic sequences of them (a broadcast: push, viewers,
//!   end), played against whatever handlers the edge registered.

pub mod api;
pub mod captures;
pub mod scenes;
pub mod sender;

use std::net::SocketAddr;

pub use api::MistApi;

/// Serves `api` on `listener`'s address until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, api: MistApi) -> std::io::Result<()> {
    axum::serve(
        listener,
        api.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
