//! Sends triggers as MistServer does, byte for byte: the request line, the
//! headers in Mist's order and spelling, and the body as captured. Written
//! on a raw socket, since an HTTP client library would reorder or
//! re-case the headers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::captures::Capture;

/// The handler's answer to one trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A trigger to send: a capture, re-stamped so that each firing is new.
#[derive(Debug, Clone)]
pub struct Firing {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Firing {
    /// The capture as it was, with a fresh X-Trigger-UUID and time, posted
    /// to `path_prefix` followed by the trigger's name.
    pub fn from_capture(capture: &Capture, path_prefix: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let headers = capture
            .headers
            .iter()
            .map(|(name, value)| {
                let value = match name.as_str() {
                    "X-Trigger-UUID" => Uuid::now_v7().to_string(),
                    "X-Trigger-UnixMillis" => now.clone(),
                    _ => value.clone(),
                };
                (name.clone(), value)
            })
            .collect();
        Self {
            path: format!(
                "{}/{}",
                path_prefix.trim_end_matches('/'),
                capture.trigger()
            ),
            headers,
            body: capture.body.clone(),
        }
    }

    /// Replaces the body (for a payload of another stream, or a broken one).
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        match self.headers.iter_mut().find(|(n, _)| n == name) {
            Some(header) => header.1 = value,
            None => self.headers.push((name.to_owned(), value)),
        }
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// A header as it will be sent (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn uuid(&self) -> Option<&str> {
        self.header("X-Trigger-UUID")
    }

    /// The request's bytes, as Mist writes them.
    pub fn to_bytes(&self, host: &SocketAddr) -> Vec<u8> {
        let mut request = format!("POST {} HTTP/1.1\r\n", self.path);
        for (name, value) in &self.headers {
            let value = match name.as_str() {
                "Content-Length" => self.body.len().to_string(),
                "Host" => host.to_string(),
                _ => value.clone(),
            };
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }

    /// Sends it to `handler` and reads the answer, within `timeout`.
    pub async fn send(&self, handler: SocketAddr, timeout: Duration) -> std::io::Result<Reply> {
        tokio::time::timeout(timeout, self.exchange(handler))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
    }

    /// Sends it to `handler` and closes the socket at once, without reading
    /// the answer: what Mist does with an asynchronous trigger.
    pub async fn fire_and_close(&self, handler: SocketAddr) -> std::io::Result<()> {
        let mut stream = TcpStream::connect(handler).await?;
        stream.write_all(&self.to_bytes(&handler)).await?;
        stream.shutdown().await
    }

    async fn exchange(&self, handler: SocketAddr) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(handler).await?;
        stream.write_all(&self.to_bytes(&handler)).await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
