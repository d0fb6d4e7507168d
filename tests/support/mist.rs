//! A real MistServer for the tests, built by `compose/mist` from the
//! shared source: started from a config the edge's bootstrap wrote (camera
//! discovery off, every protocol on 127.0.0.1, its own ports), killed with
//! its whole process group. Also an ffmpeg test-pattern encoder and plain
//! HTTP fetches for viewers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use frameworks_edge::mist::bootstrap::{MistListeners, open_private, write_config};
use frameworks_edge::mist::{MistClient, MistSettings};

use super::{ScratchDir, free_port};

/// The directory of the Mist binaries: FRAMEWORKS_MIST_BIN_DIR, else what
/// `compose/mist bin` builds (once) and prints.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FRAMEWORKS_MIST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let output = Command::new(super::repo_root().join("compose/mist"))
        .arg("bin")
        .stderr(Stdio::inherit())
        .output()
        .expect("compose/mist runs");
    assert!(output.status.success(), "compose/mist bin failed");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

pub const USERNAME: &str = "frameworks";

/// A MistController and the processes it starts, in a process group of
/// their own; SIGKILLed together when dropped.
pub struct MistServer {
    pub dir: ScratchDir,
    pub listeners: MistListeners,
    pub password: String,
    udp_api_port: u16,
    controller: Option<Child>,
}

impl MistServer {
    /// Writes the config and starts MistController; waits for its API.
    pub async fn start(tag: &str) -> Self {
        let dir = ScratchDir::new(tag);
        let listeners = MistListeners {
            interface: "127.0.0.1".into(),
            api_port: free_port(),
            http_port: free_port(),
            rtmp_port: free_port(),
            srt_port: Some(free_port()),
        };
        let mut mist = Self {
            dir,
            listeners,
            password: format!("pw-{}", uuid::Uuid::now_v7().simple()),
            udp_api_port: free_udp_port(),
            controller: None,
        };
        mist.launch().await;
        mist
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.0.join("config.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.0.join("mist.log")
    }

    /// `host:port` of the API.
    pub fn api(&self) -> String {
        format!("127.0.0.1:{}", self.listeners.api_port)
    }

    pub fn http(&self) -> String {
        format!("127.0.0.1:{}", self.listeners.http_port)
    }

    pub fn client(&self) -> MistClient {
        MistClient::new(MistSettings {
            address: self.api(),
            username: USERNAME.into(),
            password: self.password.clone(),
            timeout: Duration::from_secs(5),
        })
    }

    /// (Re)starts MistController from the config file (written first, or
    /// made safe again).
    pub async fn launch(&mut self) {
        write_config(
            &self.config_path(),
            &self.listeners,
            USERNAME,
            &self.password,
        )
        .expect("the Mist config is written");
        // Mist logs push URLs with their stream keys: owner-only.
        let log = open_private(&self.log_path()).expect("Mist's log file");
        use std::os::unix::process::CommandExt;
        // Mist's processes share state through /dev/shm under fixed names
        // (its trigger set, config and streams) and find the controller's
        // UDP API there: each test's Mist gets a /dev/shm of its own (a
        // private mount namespace) and a UDP API port of its own, so it
        // never meets compose/up's Mist or what a killed one left behind.
        let controller = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o size=2g,mode=1777 frameworks-mist-shm /dev/shm && exec "$0" "$@""#)
            .arg(bin_dir().join("MistController"))
            .arg("-c")
            .arg(self.config_path())
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &self.listeners.api_port.to_string(),
            ])
            .env("UDP_API", format!("udp://127.0.0.1:{}", self.udp_api_port))
            // Not from a terminal: no interactive first-time set-up.
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("MistController starts");
        self.controller = Some(controller);
        // The API answers at once; Mist starts its protocols a few seconds later.
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = |port: u16| async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        };
        loop {
            if client.version().await.is_ok()
                && listening(self.listeners.http_port).await
                && listening(self.listeners.rtmp_port).await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "MistServer's API and protocols did not answer within 30 s; see {}",
                self.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pid of MistController.
    pub fn pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }

    /// SIGKILLs MistController and every process it started.
    pub fn kill(&mut self) {
        if let Some(mut controller) = self.controller.take() {
            let group = format!("-{}", controller.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = controller.wait();
        }
    }

    /// The pids of MistController's process group.
    pub fn group_pids(&self) -> Vec<u32> {
        let Some(group) = self.pid() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        // pgrp is the 5th field, after the ")" that ends the name.
                        let rest = stat.rsplit_once(')')?.1.to_owned();
                        rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                    })
                    == Some(group)
            })
            .collect()
    }
}

impl Drop for MistServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A UDP port free on 127.0.0.1 now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("an ephemeral UDP port on 127.0.0.1")
        .port()
}

/// Every remote address the sockets of `pids` are connected or sending to,
/// read from /proc/<pid>/net and the pids' socket inodes: (protocol,
/// remote address as `ip:port`) for each socket that names one.
pub fn remote_addresses(pids: &[u32]) -> Vec<(String, String)> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut remotes = Vec::new();
    for protocol in ["tcp", "udp", "tcp6", "udp6"] {
        let Some(pid) = pids.first() else { break };
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{protocol}")) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            remotes.push((
                protocol.to_owned(),
                format!("{} -> {}", decode(local), decode(remote)),
            ));
        }
    }
    remotes
}

/// `0100007F:1F90` as `127.0.0.1:8080` (IPv4; IPv6 shown as read).
fn decode(address: &str) -> String {
    let Some((ip, port)) = address.split_once(':') else {
        return address.to_owned();
    };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    if ip.len() == 8
        && let Ok(raw) = u32::from_str_radix(ip, 16)
    {
        let [a, b, c, d] = raw.to_le_bytes();
        return format!("{a}.{b}.{c}.{d}:{port}");
    }
    format!("[{ip}]:{port}")
}

/// An ffmpeg test pattern (H.264 and AAC) pushed to `url` for `seconds`;
/// killed when dropped.
pub struct Encoder(pub Child);

impl Encoder {
    pub fn rtmp(url: &str, seconds: u32, log: &Path) -> Self {
        Self::push("flv", url, seconds, log)
    }

    /// The same test pattern as MPEG-TS over SRT (`srt://host:port?streamid=<key>`).
    pub fn srt(url: &str, seconds: u32, log: &Path) -> Self {
        Self::push("mpegts", url, seconds, log)
    }

    fn push(format: &str, url: &str, seconds: u32, log: &Path) -> Self {
        let log = std::fs::File::create(log).expect("encoder log");
        Self(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "warning", "-nostdin", "-re"])
                .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
                .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100"])
                .args(["-t", &seconds.to_string()])
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-tune",
                    "zerolatency",
                ])
                .args([
                    "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", format, url,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("ffmpeg runs (compose/test installs it)"),
        )
    }

    /// Waits up to `limit` for ffmpeg to exit: its status, or `None` if it is still running.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A GET answered: status, headers (names lower-case) and body.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GETs an `http://127.0.0.1:<port>/...` URL, with `headers`, within 15 s.
pub async fn fetch(url: &str, headers: &[(&str, &str)]) -> Fetched {
    send("GET", url, headers, Vec::new()).await
}

/// POSTs `body` as JSON, with a Bearer `token` if given; the JSON answer.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    token: Option<&str>,
) -> serde_json::Value {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let answer = send(
        "POST",
        url,
        &headers,
        serde_json::to_vec(body).expect("JSON"),
    )
    .await;
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|_| panic!("POST {url}: {} {}", answer.status, answer.text()))
}

/// GETs `url` within `limit`; `None` when it did not finish in time.
pub async fn try_fetch(url: &str, headers: &[(&str, &str)], limit: Duration) -> Option<Fetched> {
    send_within("GET", url, headers, Vec::new(), limit).await
}

/// GETs `url` when something listens there (a process starting, or one
/// killed, may not): `None` when nothing does, or no answer came in `limit`.
pub async fn fetch_if_listening(url: &str, limit: Duration) -> Option<Fetched> {
    let parsed = url::Url::parse(url).unwrap_or_else(|_| panic!("{url} is a URL"));
    let address = format!(
        "{}:{}",
        parsed.host_str().expect("a host"),
        parsed.port_or_known_default().expect("a port")
    );
    tokio::net::TcpStream::connect(&address).await.ok()?;
    try_fetch(url, &[], limit).await
}

async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Fetched {
    send_within(method, url, headers, body, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("{method} {url} got no answer within 15 s"))
}

async fn send_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    limit: Duration,
) -> Option<Fetched> {
    use http_body_util::BodyExt;
    let parsed = url::Url::parse(url).unwrap_or_else(|_| panic!("{url} is a URL"));
    let address = format!(
        "{}:{}",
        parsed.host_str().expect("a host"),
        parsed.port_or_known_default().expect("a port")
    );
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path = format!("{path}?{query}");
    }
    let exchange = async {
        // A refused connection, a reset or a cut body is no answer (None),
        // as for a peer being killed and started again.
        let stream = tokio::net::TcpStream::connect(&address).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", address.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(
                request
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .expect("a request"),
            )
            .await
            .ok()?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .ok()?
            .to_bytes()
            .to_vec();
        Some(Fetched {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(limit, exchange).await.ok().flatten()
}

/// POSTs `body` as JSON to `url`: `None` when nothing answered in `limit`
/// (nothing listens, the connection broke).
pub async fn try_post_json(
    url: &str,
    body: &serde_json::Value,
    limit: Duration,
) -> Option<Fetched> {
    let body = serde_json::to_vec(body).expect("JSON encodes");
    send_within(
        "POST",
        url,
        &[("content-type", "application/json")],
        body,
        limit,
    )
    .await
}

/// [`try_post_json`] with `headers` besides the content type.
pub async fn try_post_json_with(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    limit: Duration,
) -> Option<Fetched> {
    let body = serde_json::to_vec(body).expect("JSON encodes");
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send_within("POST", url, &all, body, limit).await
}

/// The URIs of a playlist's entries (variant playlists or segments),
/// resolved against the playlist's own URL.
pub fn playlist_entries(playlist_url: &str, playlist: &str) -> Vec<String> {
    let base = url::Url::parse(playlist_url).expect("a URL");
    playlist
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| base.join(line).ok())
        .map(|url| url.to_string())
        .collect()
}

/// The codec names ffprobe finds in `input` (a file, or a URL it opens
/// as a player would, following redirects), in stream order.
pub fn probe_codecs(input: impl AsRef<std::ffi::OsStr>) -> Vec<String> {
    let input = input.as_ref();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            // A URL that stops answering fails within 10 s (microseconds).
            "-rw_timeout",
            "10000000",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        input.to_string_lossy(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
