//! The config file a MistServer starts from, before it first starts.
//!
//! Mist does two unsafe things when it starts with no config of its own:
//! it turns on every protocol on every interface, and, once it has an
//! account and protocols, it probes for cameras (ONVIF WS-Discovery
//! multicast to 239.255.255.250:3702 and VISCA broadcasts) from sockets
//! bound to every interface. So the edge writes the file first: camera
//! discovery off, an account, and only the protocols the platform serves,
//! each bound to one interface. The file holds the account's password
//! hash and, once Mist saves, stream keys in push URLs: it is written
//! readable by its owner alone.

use std::io::Write;
use std::path::Path;

use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

/// The ports and interface a MistServer serves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MistListeners {
    /// The one interface every protocol and the API bind to.
    pub interface: String,
    pub api_port: u16,
    pub http_port: u16,
    pub rtmp_port: u16,
    /// SRT ingest (`srt://host:port?streamid=<key>`); `None` leaves it off.
    pub srt_port: Option<u16>,
}

/// Protocols served over Mist's HTTP port: HLS, LL-HLS and DASH (CMAF), MP4,
/// and MPEG-TS over HTTP (what recordings to `.ts` files are written with).
const HTTP_OUTPUTS: [&str; 4] = ["HLS", "CMAF", "MP4", "HTTPTS"];

/// The initial configuration: an account `username` with `password`,
/// camera discovery off, the protocols of `listeners` and nothing else.
pub fn initial_config(listeners: &MistListeners, username: &str, password: &str) -> Value {
    let interface = &listeners.interface;
    let mut protocols = vec![
        json!({"connector": "HTTP", "interface": interface, "port": listeners.http_port}),
        json!({"connector": "RTMP", "interface": interface, "port": listeners.rtmp_port}),
    ];
    protocols.extend(HTTP_OUTPUTS.iter().map(|c| json!({ "connector": c })));
    if let Some(port) = listeners.srt_port {
        protocols.push(json!({"connector": "TSSRT", "interface": interface, "port": port}));
    }
    let password_md5 = data_encoding::HEXLOWER.encode(&Md5::digest(password.as_bytes()));
    json!({
        "account": { username: { "password": password_md5 } },
        "config": {
            "device_discovery": false,
            "controller": { "interface": interface, "port": listeners.api_port },
            "protocols": protocols,
        },
        "streams": {},
    })
}

/// Makes `existing` (a config Mist saved) safe to start from again: camera
/// discovery off, whatever else it holds.
pub fn make_safe(existing: &mut Value) {
    if !existing.is_object() {
        *existing = json!({});
    }
    if let Some(root) = existing.as_object_mut() {
        let config = root
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !config.is_object() {
            *config = Value::Object(Map::new());
        }
        if let Some(config) = config.as_object_mut() {
            config.insert("device_discovery".into(), Value::Bool(false));
        }
    }
}

/// Why a Mist config could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a MistServer config (not JSON): {source}")]
    NotJson {
        path: String,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Writes the initial config to `path` unless a config is there already,
/// in which case only camera discovery is turned off in it (Mist's own
/// saves are kept). Either way the file ends up readable by its owner only.
pub fn write_config(
    path: &Path,
    listeners: &MistListeners,
    username: &str,
    password: &str,
) -> Result<(), BootstrapError> {
    let shown = path.display().to_string();
    let config = match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => {
            let mut existing: Value =
                serde_json::from_slice(&bytes).map_err(|source| BootstrapError::NotJson {
                    path: shown.clone(),
                    source,
                })?;
            make_safe(&mut existing);
            existing
        }
        Ok(_) => initial_config(listeners, username, password),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            initial_config(listeners, username, password)
        }
        Err(source) => {
            return Err(BootstrapError::Read {
                path: shown,
                source,
            });
        }
    };
    let write = |source| BootstrapError::Write {
        path: shown.clone(),
        source,
    };
    let temporary = path.with_extension("json.tmp");
    {
        let mut file = open_private(&temporary).map_err(write)?;
        let text = serde_json::to_vec_pretty(&config)
            .map_err(std::io::Error::other)
            .map_err(write)?;
        file.write_all(&text).map_err(write)?;
        file.sync_all().map_err(write)?;
    }
    std::fs::rename(&temporary, path).map_err(write)
}

/// Creates (or truncates) `path` with mode 0600.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode applies only to a file this call created.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners() -> MistListeners {
        MistListeners {
            interface: "127.0.0.1".into(),
            api_port: 4242,
            http_port: 8080,
            rtmp_port: 1935,
            srt_port: Some(8889),
        }
    }

    #[test]
    fn the_initial_config_binds_every_listening_protocol_to_the_interface_and_stops_discovery() {
        let config = initial_config(&listeners(), "admin", "secret");
        assert_eq!(config["config"]["device_discovery"], json!(false));
        assert_eq!(
            config["account"]["admin"]["password"],
            json!("5ebe2294ecd0e0f08eab7690d2a6ee69"),
            "md5 of the password, as Mist stores it"
        );
        let protocols = config["config"]["protocols"].as_array().unwrap();
        for protocol in protocols {
            if protocol.get("port").is_some() {
                assert_eq!(protocol["interface"], json!("127.0.0.1"), "{protocol}");
            }
        }
        let names: Vec<&str> = protocols
            .iter()
            .filter_map(|p| p["connector"].as_str())
            .collect();
        assert_eq!(
            names,
            ["HTTP", "RTMP", "HLS", "CMAF", "MP4", "HTTPTS", "TSSRT"]
        );
    }

    #[test]
    fn a_saved_config_is_kept_with_discovery_turned_off() {
        let dir = std::env::temp_dir().join(format!("fw-mist-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            r#"{"config":{"device_discovery":true,"serverid":"edge-1"},"streams":{"live":{"source":"push://"}}}"#,
        )
        .unwrap();
        write_config(&path, &listeners(), "admin", "secret").unwrap();
        let kept: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(kept["config"]["device_discovery"], json!(false));
        assert_eq!(kept["config"]["serverid"], json!("edge-1"));
        assert_eq!(kept["streams"]["live"]["source"], json!("push://"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            write_config(&path, &listeners(), "admin", "secret"),
            Err(BootstrapError::NotJson { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
