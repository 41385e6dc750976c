//! The `runnel` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

use runnel::broker::Broker;
use runnel::config::Config;

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "A Kafka-wire-compatible event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Kafka clients (default: 127.0.0.1:9092, data in ./runnel-data).
    Serve(ServeArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// A Kafka server.properties file.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to listen on, host:port (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// host:port clients are told to connect to (defaults to the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Log directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Any broker property, key=value (repeatable); wins over the file and the environment.
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNNEL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut flags = Vec::new();
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--set expects key=value, got {kv:?}"))?;
        flags.push((k.trim().to_string(), v.trim().to_string()));
    }
    if let Some(l) = &args.listen {
        flags.push(("listeners".into(), format!("PLAINTEXT://{l}")));
    }
    if let Some(a) = &args.advertise {
        flags.push(("advertised.listeners".into(), format!("PLAINTEXT://{a}")));
    }
    if let Some(d) = &args.data {
        flags.push(("log.dirs".into(), d.display().to_string()));
    }
    let mut config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let bound = listener.local_addr()?;
        if config.listen.port() == 0 && !config.explicit.contains_key("advertised.listeners") {
            config.advertised_port = i32::from(bound.port());
        }
        let data = config.log_dir.clone();
        let broker = Arc::new(tokio::task::block_in_place(|| Broker::open(config))?);
        // Tests and scripts wait for this exact line.
        println!("runnel listening on {bound} (data in {})", data.display());
        runnel::net::server::run(listener, broker, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
