//! The `runnel` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

/// `println!` for the client subcommands' output: a reader that went away (`| head`) ends
/// the command quietly instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod cli;

use std::time::Duration;

use runnel::broker::Broker;
use runnel::client::admin;
use runnel::client::consumer::{ConsumeOptions, Consumer};
use runnel::cluster::{registration, Cluster};
use runnel::config::{Config, Defaults};
use runnel::metadata::BrokerRegistration;

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "A Kafka-wire-compatible event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text or as one JSON object each (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RUNNEL_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Kafka clients (default: 127.0.0.1:9092, data in ./runnel-data).
    Serve(ServeArgs),
    /// Write records read from stdin or a file, one per line (as kafka-console-producer).
    Produce(ProduceArgs),
    /// Print a topic's records (by assignment, or as a member of a consumer group).
    Consume(ConsumeArgs),
    /// Consumer groups: list, describe (members, offsets, lag), delete.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Topics: list, create, describe, alter (partitions), delete.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Topic and broker configs: describe, set, delete.
    Configs {
        #[command(subcommand)]
        command: ConfigsCommand,
    },
    /// A topic's offsets per partition: earliest, latest, or at a time.
    Offsets(OffsetsArgs),
    /// The cluster's metadata quorum: leader, epoch, high watermark, each voter's lag.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Exit 0 if the broker answers ApiVersions, 1 if not (Docker's HEALTHCHECK).
    Health(HealthArgs),
    /// The hottest partitions and their heaviest keys, live (from each broker's metrics listener).
    Top(TopArgs),
}

#[derive(Parser)]
struct TopArgs {
    /// Metrics listeners of the brokers to merge (host:port, comma-separated).
    #[arg(long, value_delimiter = ',', default_value = runnel::config::DEFAULT_METRICS_LISTENER)]
    metrics: Vec<String>,
    /// Print one report as JSON and exit.
    #[arg(long)]
    json: bool,
    /// Partitions shown.
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
    /// Seconds between redraws of the live view.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
}

#[derive(Parser)]
struct HealthArgs {
    /// The broker to ask, host:port (default: this machine's broker, from the same
    /// configuration `serve` reads).
    #[arg(long = "bootstrap-server", short = 'b')]
    bootstrap: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    #[command(flatten)]
    sources: ConfigSources,
}

/// Where `serve` (and `health`, to find the local broker) read their configuration.
#[derive(Parser)]
struct ConfigSources {
    /// A Kafka server.properties file.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Default as Kafka's docker images do: data in /var/lib/kafka/data and, when no KAFKA_*
    /// variable configures the broker, one node on :9092 advertised as localhost:9092.
    #[arg(long)]
    image_defaults: bool,
}

impl ConfigSources {
    fn load(&self, flags: &[(String, String)]) -> anyhow::Result<Config> {
        let defaults = if self.image_defaults {
            Defaults::KafkaImage
        } else {
            Defaults::Runnel
        };
        Config::load(defaults, self.config.as_deref(), std::env::vars(), flags)
    }
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The quorum's state, as kafka-metadata-quorum describe --status --replication.
    Status {
        #[command(flatten)]
        server: Bootstrap,
        #[arg(long)]
        json: bool,
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
struct ProduceArgs {
    #[command(flatten)]
    server: Bootstrap,
    topic: String,
    /// Each line is key, this separator, value (kafka-console-producer's parse.key).
    #[arg(long)]
    key_separator: Option<String>,
    /// A header on every record, key=value (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition (default: by key, as Kafka's Java client; keyless
    /// records round-robin).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// 0, 1, or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Read the records from this file instead of stdin.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Print where each record was written: topic-partition@offset.
    #[arg(long)]
    print_offsets: bool,
    /// How long the broker may take to acknowledge a request.
    #[arg(long, default_value_t = 30000)]
    timeout_ms: u64,
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
        #[arg(long)]
        json: bool,
    },
    /// A group's state and, per partition, committed offset, end offset, lag and consumer.
    Describe {
        #[command(flatten)]
        server: Bootstrap,
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a group without members, and its committed offsets.
    Delete {
        #[command(flatten)]
        server: Bootstrap,
        group: String,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Every topic with its partition count.
    List {
        #[command(flatten)]
        server: Bootstrap,
        #[arg(long)]
        json: bool,
    },
    /// Create a topic.
    Create {
        #[command(flatten)]
        server: Bootstrap,
        topic: String,
        /// -1: the broker's num.partitions.
        #[arg(long, short = 'p', default_value_t = -1)]
        partitions: i32,
        #[arg(long, short = 'r', default_value_t = -1)]
        replication_factor: i16,
        /// A topic config, key=value (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Partitions (leader, replicas, ISR, high watermark) and configs of a topic.
    Describe {
        #[command(flatten)]
        server: Bootstrap,
        topic: String,
        #[arg(long)]
        json: bool,
        /// Only partitions whose ISR is smaller than their replica set.
        #[arg(long, alias = "under-replicated-partitions")]
        under_replicated: bool,
        /// Only partitions without a leader.
        #[arg(long, alias = "unavailable-partitions")]
        unavailable: bool,
    },
    /// Raise a topic's partition count.
    Alter {
        #[command(flatten)]
        server: Bootstrap,
        topic: String,
        #[arg(long, short = 'p')]
        partitions: i32,
    },
    /// Delete topics and their data.
    Delete {
        #[command(flatten)]
        server: Bootstrap,
        #[arg(required = true)]
        topics: Vec<String>,
    },
}

#[derive(Parser)]
struct ConfigTarget {
    /// A topic's configs.
    #[arg(long, conflicts_with = "broker")]
    topic: Option<String>,
    /// A broker's settings (its node id; default: the one connected to).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    broker: Option<String>,
}

#[derive(Subcommand)]
enum ConfigsCommand {
    /// Every config with its value and source.
    Describe {
        #[command(flatten)]
        server: Bootstrap,
        #[command(flatten)]
        target: ConfigTarget,
        #[arg(long)]
        json: bool,
    },
    /// Set topic configs, key=value.
    Set {
        #[command(flatten)]
        server: Bootstrap,
        #[arg(long)]
        topic: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove topic config overrides (back to the broker's value).
    Delete {
        #[command(flatten)]
        server: Bootstrap,
        #[arg(long)]
        topic: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Parser)]
struct OffsetsArgs {
    #[command(flatten)]
    server: Bootstrap,
    topic: String,
    /// earliest, latest, max-timestamp, or a timestamp in ms.
    #[arg(long, default_value = "latest")]
    time: String,
    #[arg(long)]
    json: bool,
}

#[derive(Parser)]
struct ServeArgs {
    #[command(flatten)]
    sources: ConfigSources,
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

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The broker logs what it does; the client commands speak only when something is wrong.
    let default_level = match cli.command {
        Command::Serve(_) => "info,openraft=warn",
        _ => "warn",
    };
    // RUST_LOG-style directives (`info,runnel::log=debug`) from RUNNEL_LOG, else RUST_LOG.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNNEL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(false).init(),
        // Colour codes only for a terminal, not in `docker logs` or a log file.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Produce(a) => {
            let command = cli::produce::ProduceCommand {
                options: runnel::client::producer::ProduceOptions {
                    bootstrap: a.server.bootstrap,
                    topic: a.topic,
                    partition: a.partition,
                    acks: cli::produce::parse_acks(&a.acks)?,
                    timeout: Duration::from_millis(a.timeout_ms),
                },
                key_separator: a.key_separator,
                headers: a
                    .headers
                    .iter()
                    .map(|h| cli::produce::parse_header(h))
                    .collect::<anyhow::Result<_>>()?,
                file: a.file,
                print_offsets: a.print_offsets,
            };
            client_runtime()?.block_on(command.run()).map(drop)
        }
        Command::Consume(args) => client_runtime()?.block_on(consume(args)),
        Command::Groups { command } => client_runtime()?.block_on(groups(command)),
        Command::Topics { command } => client_runtime()?.block_on(topics(command)),
        Command::Configs { command } => client_runtime()?.block_on(configs(command)),
        Command::Cluster {
            command: ClusterCommand::Status { server, json },
        } => client_runtime()?.block_on(cli::cluster::status(&server.bootstrap, json)),
        Command::Top(a) => cli::top::run(
            &a.metrics,
            a.json,
            a.limit,
            Duration::from_secs_f64(a.interval.clamp(0.1, 3600.0)),
        ),
        Command::Health(a) => {
            let target = match a.bootstrap {
                Some(addr) => cli::health::Target::Broker(addr),
                None => cli::health::local_target(&a.sources.load(&[])?)?,
            };
            client_runtime()?.block_on(cli::health::check(
                &target,
                Duration::from_millis(a.timeout_ms),
            ))
        }
        Command::Offsets(a) => client_runtime()?.block_on(cli::topics::offsets(
            &a.server.bootstrap,
            &a.topic,
            cli::topics::parse_time(&a.time)?,
            a.json,
        )),
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
    let total = opts.max_records;
    let mut consumer = Consumer::start(opts).await?;
    let stdout = std::io::stdout();
    let to_terminal = std::io::IsTerminal::is_terminal(&stdout);
    let mut progress = cli::progress::Progress::new("consumed", total, !to_terminal);
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    let run = consumer.run(|_, r| {
        progress.advance(1);
        let value = r.value.as_deref().map(String::from_utf8_lossy);
        let line = if args.print_key {
            let key = r.key.as_deref().map(String::from_utf8_lossy);
            format!("{}\t{}", key.unwrap_or_default(), value.unwrap_or_default())
        } else {
            value.unwrap_or_default().into_owned()
        };
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            // The reader went away (`| head`): nothing more can be printed; stop quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            failed.get_or_insert(e);
        }
    });
    let n = tokio::select! {
        r = run => r?,
        _ = tokio::signal::ctrl_c() => 0,
    };
    drop(out);
    progress.finish();
    consumer.close().await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    eprintln!("Processed a total of {n} messages");
    Ok(())
}

async fn groups(command: GroupsCommand) -> anyhow::Result<()> {
    match command {
        GroupsCommand::List { server, json } => cli::groups::list(&server.bootstrap, json).await,
        GroupsCommand::Describe {
            server,
            group,
            json,
        } => cli::groups::describe(&server.bootstrap, &group, json).await,
        GroupsCommand::Delete { server, group } => {
            cli::groups::delete(&server.bootstrap, &group).await
        }
    }
}

async fn topics(command: TopicsCommand) -> anyhow::Result<()> {
    match command {
        TopicsCommand::List { server, json } => cli::topics::list(&server.bootstrap, json).await,
        TopicsCommand::Create {
            server,
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = cli::topics::parse_pairs(&configs)?;
            admin::create_topic(
                &server.bootstrap,
                &topic,
                partitions,
                replication_factor,
                &configs,
            )
            .await?;
            out!("Created topic {topic}");
            Ok(())
        }
        TopicsCommand::Describe {
            server,
            topic,
            json,
            under_replicated,
            unavailable,
        } => {
            let filter = cli::topics::PartitionFilter {
                under_replicated,
                unavailable,
            };
            cli::topics::describe(&server.bootstrap, &topic, json, filter).await
        }
        TopicsCommand::Alter {
            server,
            topic,
            partitions,
        } => {
            admin::add_partitions(&server.bootstrap, &topic, partitions).await?;
            out!("Topic {topic} now has {partitions} partitions");
            Ok(())
        }
        TopicsCommand::Delete { server, topics } => {
            // Progress only while the lines below go somewhere other than the terminal.
            let shown = !std::io::IsTerminal::is_terminal(&std::io::stdout());
            let mut progress =
                cli::progress::Progress::new("deleted", Some(topics.len() as u64), shown);
            for topic in &topics {
                admin::delete_topic(&server.bootstrap, topic).await?;
                progress.advance(1);
                out!("Deleted topic {topic}");
            }
            Ok(())
        }
    }
}

async fn configs(command: ConfigsCommand) -> anyhow::Result<()> {
    match command {
        ConfigsCommand::Describe {
            server,
            target,
            json,
        } => {
            let (kind, name) = match (target.topic, target.broker) {
                (Some(t), _) => (2, t),
                (None, Some(b)) => (4, b),
                (None, None) => anyhow::bail!("say --topic NAME or --broker [ID]"),
            };
            cli::topics::describe_configs(&server.bootstrap, kind, &name, json).await
        }
        ConfigsCommand::Set {
            server,
            topic,
            pairs,
        } => {
            let set = cli::topics::parse_pairs(&pairs)?;
            admin::alter_topic_configs(&server.bootstrap, &topic, &set, &[]).await?;
            out!("Updated {} config(s) of topic {topic}", set.len());
            Ok(())
        }
        ConfigsCommand::Delete {
            server,
            topic,
            keys,
        } => {
            admin::alter_topic_configs(&server.bootstrap, &topic, &[], &keys).await?;
            out!("Removed {} override(s) of topic {topic}", keys.len());
            Ok(())
        }
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
    let mut config = args.sources.load(&flags)?;
    log_effective_config(&config);
    if !config.ignored.is_empty() {
        tracing::warn!(
            keys = %config.ignored.join(", "),
            "settings Runnel accepts without acting on them"
        );
    }
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if !config.cluster.broker {
        return runtime.block_on(serve_controller_only(config));
    }
    runtime.block_on(async move {
        let mut listeners = Vec::with_capacity(config.listeners.client.len());
        for l in &mut config.listeners.client {
            let socket = tokio::net::TcpListener::bind(l.bind)
                .await
                .with_context(|| format!("binding listener {} on {}", l.name, l.bind))?;
            let bound = socket.local_addr()?;
            // Port 0 asks for any free port: advertise the one taken.
            if l.advertised_port == 0 {
                l.advertised_port = i32::from(bound.port());
            }
            tracing::info!(listener = %l.name, %bound, advertised = %format!("{}:{}", l.advertised_host, l.advertised_port), "listening");
            listeners.push((l.name.clone(), socket, bound));
        }
        let bound = listeners
            .first()
            .map(|(.., b)| *b)
            .ok_or_else(|| anyhow!("no client listener"))?;
        let controller_listener = match config.listeners.controller {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the controller listener {addr}"))?,
            ),
            None => None,
        };
        let metrics_listener = bind_metrics(&config).await?;
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        runnel::cluster::claim_data_dir(&config)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let cluster = Cluster::start(&config, controller_listener, stop_rx.clone()).await?;
        let registration = BrokerRegistration {
            id: config.node_id,
            incarnation: uuid::Uuid::new_v4(),
            endpoints: config
                .listeners
                .client
                .iter()
                .map(|l| runnel::metadata::Endpoint {
                    listener: l.name.clone(),
                    host: l.advertised_host.clone(),
                    port: l.advertised_port,
                })
                .collect(),
            rack: config.cluster.rack.clone(),
            fenced: false,
        };
        let heartbeat = Duration::from_millis(config.cluster.heartbeat_interval_ms.max(1));
        let data = config.log_dir.clone();
        let broker = Arc::new(tokio::task::block_in_place(|| {
            Broker::open(config, cluster.clone())
        })?);
        tokio::spawn(broker.clone().follow_metadata(stop_rx.clone()));
        tokio::spawn(runnel::cluster::replica_fetcher::run(
            broker.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(runnel::cluster::isr::run(broker.clone(), stop_rx.clone()));
        if let Some(l) = metrics_listener {
            tokio::spawn(runnel::metrics::http::serve(l, broker.clone(), stop_rx.clone()));
        }
        registration::register(&cluster, &registration).await?;
        let caught_up = cluster.image.borrow().offset;
        broker.wait_published(caught_up).await?;
        broker.import_legacy_registry().await?;
        broker.remove_stray_logs()?;
        let life = Arc::new(registration::Lifecycle::new(registration));
        tokio::spawn(registration::heartbeat_loop(
            cluster.clone(),
            life.clone(),
            heartbeat,
            stop_rx,
        ));
        // Tests and scripts wait for this exact line (and read the metrics port from it).
        let metrics = metrics_addr.map_or_else(String::new, |a| format!("; metrics on http://{a}"));
        println!(
            "runnel listening on {bound} (data in {}{metrics})",
            data.display()
        );
        let c = cluster.clone();
        let b = broker.clone();
        let shutdown = async move {
            shutdown_signal().await;
            let led = b.led_partitions();
            if let Some(offset) = registration::controlled_shutdown(&c, &life).await {
                let _ =
                    tokio::time::timeout(registration::SHUTDOWN_TIMEOUT, b.wait_published(offset))
                        .await;
                // Still serving: clients sending here now learn the new leaders from
                // NOT_LEADER_OR_FOLLOWER answers (KIP-951) rather than from a closed connection.
                // Pointless when no leadership went to another broker (a single node).
                if b.any_led_elsewhere(&led) {
                    tokio::time::sleep(registration::LEADERSHIP_HANDOFF).await;
                }
            }
            let _ = stop_tx.send(true);
        };
        let listeners = listeners.into_iter().map(|(n, s, _)| (n, s)).collect();
        let served = runnel::net::server::run(listeners, broker, shutdown).await;
        cluster.shutdown().await;
        served
    })
}

/// One line with what this process will be: the effective identity and every setting given
/// (secrets would be masked here once SASL lands).
fn log_effective_config(config: &Config) {
    let roles = match (config.cluster.broker, config.cluster.controller) {
        (true, true) => "broker,controller",
        (true, false) => "broker",
        _ => "controller",
    };
    let set: Vec<String> = config
        .explicit
        .iter()
        .map(|(k, (v, source))| format!("{k}={v} ({source:?})"))
        .collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node_id = config.node_id,
        roles,
        cluster_id = %config.cluster_id,
        log_dir = %config.log_dir.display(),
        voters = config.cluster.voters.len(),
        metrics = config.metrics_listener.as_deref().unwrap_or("off"),
        settings = %set.join(", "),
        "starting"
    );
}

/// The metrics listener. The default address is taken only when free (a second broker on the
/// same machine goes without, with a warning); an address set explicitly must bind.
async fn bind_metrics(config: &Config) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = &config.metrics_listener else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr.as_str()).await {
        Ok(l) => {
            let bound = l.local_addr()?;
            tracing::info!(%bound, "serving /metrics and /health");
            Ok(Some(l))
        }
        Err(e) if !config.is_explicit("metrics.listeners") => {
            tracing::warn!(%addr, error = %e, "metrics listener not started (set metrics.listeners to choose another address)");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding metrics.listeners {addr}")),
    }
}

/// process.roles=controller: a voter of the quorum and the active controller when elected,
/// with no client listener and no partitions.
async fn serve_controller_only(config: Config) -> anyhow::Result<()> {
    let addr = config
        .listeners
        .controller
        .ok_or_else(|| anyhow!("a controller needs a CONTROLLER listener in listeners"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the controller listener {addr}"))?;
    let bound = listener.local_addr()?;
    runnel::cluster::claim_data_dir(&config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cluster = Cluster::start(&config, Some(listener), stop_rx).await?;
    println!(
        "runnel controller listening on {bound} (data in {})",
        config.log_dir.display()
    );
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    cluster.shutdown().await;
    Ok(())
}

/// Segment files, index maps, sockets and the handles of fetches being sent all count against
/// RLIMIT_NOFILE, and running out fails appends (which marks the log directory failed). The
/// soft limit is often far below what the system allows, so take the hard limit, as Kafka's
/// deployment guides ask operators to.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    // None is unlimited; an unlimited hard limit is left alone (the kernel caps it anyway).
    if let (Some(from), Some(to)) = (limit.current, limit.maximum) {
        if from < to {
            limit.current = Some(to);
            match setrlimit(Resource::Nofile, limit) {
                Ok(()) => tracing::debug!(from, to, "raised the open file limit"),
                Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
            }
        }
    }
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
