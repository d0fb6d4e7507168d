//! `frameworks mist-config`: writes the config file a MistServer edge
//! starts from, before its first start (camera discovery off, an account,
//! the platform's protocols bound to one interface). A config Mist has
//! saved already is kept, with camera discovery turned off in it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use frameworks_edge::mist::bootstrap::{MistListeners, write_config};
use tracing::info;

/// Write a MistServer config that is safe to start from.
#[derive(Debug, clap::Args)]
pub struct MistConfigCommand {
    /// The config file MistController is started with (`-c`).
    #[arg(long = "config", env = "FRAMEWORKS_MIST_CONFIG")]
    config: PathBuf,

    /// The one interface Mist's API and protocols bind to.
    #[arg(
        long = "interface",
        env = "FRAMEWORKS_MIST_INTERFACE",
        default_value = "127.0.0.1"
    )]
    interface: String,

    /// Mist's API port.
    #[arg(
        long = "api-port",
        env = "FRAMEWORKS_MIST_API_PORT",
        default_value_t = 4242
    )]
    api_port: u16,

    /// HTTP: HLS, LL-HLS and DASH (CMAF), MP4 and MPEG-TS.
    #[arg(
        long = "http-port",
        env = "FRAMEWORKS_MIST_HTTP_PORT",
        default_value_t = 8080
    )]
    http_port: u16,

    /// RTMP ingest and playback.
    #[arg(
        long = "rtmp-port",
        env = "FRAMEWORKS_MIST_RTMP_PORT",
        default_value_t = 1935
    )]
    rtmp_port: u16,

    /// SRT ingest; 0 leaves SRT off (a Mist built without SRT has no TSSRT).
    #[arg(
        long = "srt-port",
        env = "FRAMEWORKS_MIST_SRT_PORT",
        default_value_t = 0
    )]
    srt_port: u16,

    /// The account the edge daemon logs in as.
    #[arg(
        long = "username",
        env = "FRAMEWORKS_MIST_USERNAME",
        default_value = "admin"
    )]
    username: String,

    #[arg(
        long = "password",
        env = "FRAMEWORKS_MIST_PASSWORD",
        hide_env_values = true
    )]
    password: String,
}

impl MistConfigCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(!self.password.is_empty(), "--password must not be empty");
        let listeners = MistListeners {
            interface: self.interface,
            api_port: self.api_port,
            http_port: self.http_port,
            rtmp_port: self.rtmp_port,
            srt_port: (self.srt_port != 0).then_some(self.srt_port),
        };
        write_config(&self.config, &listeners, &self.username, &self.password)
            .context("writing the MistServer config")?;
        info!(config = %self.config.display(), "MistServer config written (camera discovery off, owner-only)");
        Ok(ExitCode::SUCCESS)
    }
}
