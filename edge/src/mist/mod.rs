//! A client for MistServer's HTTP API: `POST /api2` with a JSON object of
//! commands, answered with only what was asked.
//!
//! Login. Mist trusts requests from its own loopback; anyone else answers
//! its challenge: `password = md5_hex(md5_hex(secret) + challenge)`, sent in
//! an `authorize` object with every request (authorisation sticks to a TCP
//! connection, and this client opens one per call). A wrong login gets a 403
//! without a Content-Length on a connection Mist keeps open, so the client
//! reads the status line only, and every call is bounded by a timeout.

pub mod bootstrap;
mod commands;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tracing::debug;

pub use commands::*;

/// Where Mist's API is and how to log in.
#[derive(Debug, Clone)]
pub struct MistSettings {
    /// `host:port` of the API (Mist's default is 127.0.0.1:4242).
    pub address: String,
    pub username: String,
    pub password: String,
    /// Bound on every call: connecting, asking and reading the answer.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum MistError {
    #[error("connecting to MistServer at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("MistServer did not answer within {0:?}")]
    Timeout(Duration),
    #[error("talking to MistServer: {0}")]
    Http(#[from] hyper::Error),
    #[error("MistServer refused the login (wrong username or password)")]
    Unauthorized,
    #[error("MistServer has no account yet; create one with `-a user:pass` or its web UI")]
    NoAccount,
    #[error("MistServer answered HTTP {0}")]
    Status(u16),
    #[error("MistServer's answer is not what {command} returns: {problem}")]
    BadAnswer {
        command: &'static str,
        problem: String,
    },
}

/// A MistServer API client; cheap to share.
#[derive(Debug)]
pub struct MistClient {
    settings: MistSettings,
    /// The last challenge Mist sent (it changes daily and per peer address).
    challenge: Mutex<Option<String>>,
}

fn md5_hex(text: &str) -> String {
    data_encoding::HEXLOWER.encode(&Md5::digest(text.as_bytes()))
}

/// The answer to a login challenge.
pub fn challenge_response(password: &str, challenge: &str) -> String {
    md5_hex(&format!("{}{challenge}", md5_hex(password)))
}

impl MistClient {
    pub fn new(settings: MistSettings) -> Self {
        Self {
            settings,
            challenge: Mutex::new(None),
        }
    }

    /// Sends `commands` (one JSON object, several commands at once if need
    /// be) and answers Mist's JSON, logging in when Mist asks.
    pub async fn call(&self, commands: Map<String, Value>) -> Result<Value, MistError> {
        // At most twice: once more when the challenge we answered had changed.
        for _ in 0..2 {
            let challenge = self
                .challenge
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut body = commands.clone();
            body.insert(
                "authorize".into(),
                json!({
                    "username": self.settings.username,
                    "password": challenge
                        .as_deref()
                        .map(|c| challenge_response(&self.settings.password, c))
                        .unwrap_or_default(),
                }),
            );
            let answer = tokio::time::timeout(self.settings.timeout, self.post(&body))
                .await
                .map_err(|_| MistError::Timeout(self.settings.timeout))??;
            let status = answer
                .pointer("/authorize/status")
                .and_then(Value::as_str)
                .unwrap_or("OK");
            match status {
                "OK" => return Ok(answer),
                "NOACC" => return Err(MistError::NoAccount),
                "CHALL" => {
                    let fresh = answer
                        .pointer("/authorize/challenge")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    if fresh.is_none() || fresh == challenge {
                        // We answered this very challenge: the password is wrong.
                        return Err(MistError::Unauthorized);
                    }
                    debug!("MistServer sent a new login challenge");
                    *self
                        .challenge
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = fresh;
                }
                other => {
                    return Err(MistError::BadAnswer {
                        command: "authorize",
                        problem: format!("unknown status {other:?}"),
                    });
                }
            }
        }
        Err(MistError::Unauthorized)
    }

    async fn post(&self, body: &Map<String, Value>) -> Result<Value, MistError> {
        let address = &self.settings.address;
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| MistError::Connect {
                address: address.clone(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection ends with this call: dropping the sender closes it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "MistServer connection ended");
            }
        });
        let payload = serde_json::to_vec(body).map_err(|e| MistError::BadAnswer {
            command: "request",
            problem: e.to_string(),
        })?;
        let request = Request::post("/api2")
            .header(HOST, address.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| MistError::BadAnswer {
                command: "request",
                problem: e.to_string(),
            })?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        if status == hyper::StatusCode::FORBIDDEN {
            // No Content-Length and the connection stays open: do not read on.
            return Err(MistError::Unauthorized);
        }
        if !status.is_success() {
            return Err(MistError::Status(status.as_u16()));
        }
        let bytes = response.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| MistError::BadAnswer {
            command: "api2",
            problem: format!("not JSON: {e}"),
        })
    }
}
