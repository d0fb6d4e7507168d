//! `frameworks-mist-simulator`: a stand-in MistServer for the local stack.
//! It serves Mist's API (so `frameworks edge` can configure it and poll
//! it) and plays broadcasts of one stream over and over: an encoder
//! pushes with the stream key, viewers watch by playback id, everyone
//! leaves, a pause, again. The edge daemon answers and reports each
//! trigger, so the platform shows the stream live with its viewers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use frameworks_mist_simulator::scenes::Broadcast;
use frameworks_mist_simulator::{MistApi, serve};
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Settings {
    /// Where Mist's API (/api2) is served.
    #[arg(
        long,
        env = "FRAMEWORKS_MIST_SIM_LISTEN",
        default_value = "127.0.0.1:14242"
    )]
    listen: SocketAddr,

    /// The stream key the simulated encoder pushes with.
    #[arg(long, env = "FRAMEWORKS_MIST_SIM_STREAM_KEY", hide_env_values = true)]
    stream_key: String,

    /// The playback id the simulated viewers ask for.
    #[arg(long, env = "FRAMEWORKS_MIST_SIM_PLAYBACK_ID")]
    playback_id: String,

    /// Viewers per broadcast.
    #[arg(long, env = "FRAMEWORKS_MIST_SIM_VIEWERS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=200))]
    viewers: u32,

    /// Seconds each broadcast stays live.
    #[arg(long, env = "FRAMEWORKS_MIST_SIM_LIVE_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    live_seconds: u64,

    /// Seconds between broadcasts.
    #[arg(long, env = "FRAMEWORKS_MIST_SIM_PAUSE_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pause_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = Settings::parse();
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "listening on {}: {error} (is the port taken?)",
                settings.listen
            );
            return ExitCode::FAILURE;
        }
    };
    // Loopback is trusted, as by a real Mist: the edge daemon needs no account.
    let api = MistApi::new(None, true);
    info!(listen = %settings.listen, "simulated MistServer serving /api2");
    let broadcast = Broadcast {
        stream_key: settings.stream_key.clone(),
        playback_id: settings.playback_id.clone(),
        viewers: settings.viewers,
        hold: Duration::from_secs(settings.live_seconds),
    };
    let scenes = {
        let api = api.clone();
        async move {
            loop {
                match broadcast.play(&api).await {
                    Ok(stream) => info!(%stream, "broadcast ended"),
                    Err(error) => warn!(%error, "broadcast not played; trying again"),
                }
                tokio::time::sleep(Duration::from_secs(settings.pause_seconds)).await;
            }
        }
    };
    tokio::select! {
        served = serve(listener, api) => {
            if let Err(error) = served {
                eprintln!("serving the API: {error}");
                return ExitCode::FAILURE;
            }
        }
        () = scenes => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}
