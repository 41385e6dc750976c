//! The `runnel` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

use runnel::broker::Broker;
use runnel::client::admin;
use runnel::client::consumer::{ConsumeOptions, Consumer};
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
    /// Print a topic's records (by assignment, or as a member of a consumer group).
    Consume(ConsumeArgs),
    /// Consumer groups: list, describe (members, offsets, lag), delete.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
    },
}

#[derive(Parser)]
struct Bootstrap {
    /// A broker to connect to, host:port.
    #[arg(
        long = "bootstrap-server",
        short = 'b',
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
}

#[derive(Parser)]
struct ConsumeArgs {
    #[command(flatten)]
    server: Bootstrap,
    topic: String,
    /// Join this consumer group: partitions are shared with its other members and offsets are
    /// committed.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Without a committed offset, start at the earliest record (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit after this many milliseconds without a record.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print keys as well: key<TAB>value.
    #[arg(long)]
    print_key: bool,
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// Every group with its state.
    List {
        #[command(flatten)]
        server: Bootstrap,
    },
    /// A group's state and, per partition, committed offset, end offset, lag and consumer.
    Describe {
        #[command(flatten)]
        server: Bootstrap,
        group: String,
    },
    /// Delete a group without members, and its committed offsets.
    Delete {
        #[command(flatten)]
        server: Bootstrap,
        group: String,
    },
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
    let cli = Cli::parse();
    // The broker logs what it does; the client commands speak only when something is wrong.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNNEL_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Consume(args) => client_runtime()?.block_on(consume(args)),
        Command::Groups { command } => client_runtime()?.block_on(groups(command)),
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let opts = ConsumeOptions {
        bootstrap: args.server.bootstrap,
        topic: args.topic,
        group: args.group,
        from_beginning: args.from_beginning,
        max_records: args.max_messages,
        idle_timeout: args.timeout_ms.map(std::time::Duration::from_millis),
    };
    let mut consumer = Consumer::start(opts).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    let run = consumer.run(|_, r| {
        let value = r.value.as_deref().map(String::from_utf8_lossy);
        let line = if args.print_key {
            let key = r.key.as_deref().map(String::from_utf8_lossy);
            format!("{}\t{}", key.unwrap_or_default(), value.unwrap_or_default())
        } else {
            value.unwrap_or_default().into_owned()
        };
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            failed.get_or_insert(e);
        }
    });
    let n = tokio::select! {
        r = run => r?,
        _ = tokio::signal::ctrl_c() => 0,
    };
    drop(out);
    consumer.close().await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    eprintln!("Processed a total of {n} messages");
    Ok(())
}

async fn groups(command: GroupsCommand) -> anyhow::Result<()> {
    match command {
        GroupsCommand::List { server } => {
            let groups = admin::list_groups(&server.bootstrap).await?;
            let width = groups.iter().map(|g| g.id.len()).max().unwrap_or(5).max(5);
            println!("{:width$}  {:20}  PROTOCOL-TYPE", "GROUP", "STATE");
            for g in groups {
                println!("{:width$}  {:20}  {}", g.id, g.state, g.protocol_type);
            }
        }
        GroupsCommand::Describe { server, group } => {
            let d = admin::describe_group(&server.bootstrap, &group).await?;
            println!(
                "Group {} is {} ({} member{}, protocol {}{})",
                d.id,
                d.state,
                d.members,
                if d.members == 1 { "" } else { "s" },
                if d.protocol_type.is_empty() {
                    "-"
                } else {
                    &d.protocol_type
                },
                if d.protocol.is_empty() {
                    String::new()
                } else {
                    format!("/{}", d.protocol)
                },
            );
            let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let rows: Vec<[String; 8]> = d
                .partitions
                .iter()
                .map(|p| {
                    let (member, client, host) = p
                        .owner
                        .clone()
                        .unwrap_or_else(|| ("-".to_string(), "-".to_string(), "-".to_string()));
                    [
                        p.topic.clone(),
                        p.partition.to_string(),
                        dash(p.committed),
                        dash(p.end),
                        dash(p.lag()),
                        member,
                        host,
                        client,
                    ]
                })
                .collect();
            let header = [
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ];
            let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            println!("{}", line(header.to_vec()));
            for r in &rows {
                println!("{}", line(r.iter().map(String::as_str).collect()));
            }
        }
        GroupsCommand::Delete { server, group } => {
            admin::delete_group(&server.bootstrap, &group).await?;
            println!("Deleted group {group}");
        }
    }
    Ok(())
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
