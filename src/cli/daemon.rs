//! `banhound daemon`: the service. Builds the runtime, wires SIGTERM/SIGINT to the daemon's
//! shutdown future and turns its errors into exit codes.

use crate::bus::Bus;
use crate::cli::{exit_logged, exit_with, ExitCode};
use crate::config::ConfigPaths;
use crate::daemon::logging::{self, LogTarget};
use crate::daemon::{self, Options};
use crate::source::journal::JournalSource;
use anyhow::Context;
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Where bans, their history and the journal position are kept (systemd's
    /// StateDirectory= sets STATE_DIRECTORY).
    #[arg(
        long,
        value_name = "DIR",
        env = "STATE_DIRECTORY",
        default_value = "/var/lib/banhound"
    )]
    pub state_dir: PathBuf,
    /// Read this journald namespace (systemd-journald@NAME) instead of the system journal.
    #[arg(long, value_name = "NAME", conflicts_with = "journal_directory")]
    pub journal_namespace: Option<String>,
    /// Read the journal files in this directory instead of the system journal, e.g.
    /// systemd-journal-remote's output on a collector (as [daemon] journal_directory, which
    /// this overrides); files created in it later are read too.
    #[arg(long, value_name = "DIR")]
    pub journal_directory: Option<PathBuf>,
    /// Remove banhound's firewall objects, and so every ban, when stopping (they are
    /// restored from the state database at the next start).
    #[arg(long)]
    pub flush_on_stop: bool,
    /// Serve no control interface (no D-Bus): for tests and sandboxes without a bus. Without
    /// this, the daemon serves org.banhound.Banhound1 on the system bus (or --bus-address);
    /// a bus that cannot be reached is logged and the daemon runs without it. Wins over
    /// --bus-address and DBUS_SYSTEM_BUS_ADDRESS (not a conflict: the environment variable
    /// may be set for the whole session).
    #[arg(long)]
    pub no_bus: bool,
    /// Where logs go.
    #[arg(long, value_enum, default_value = "auto")]
    pub log_target: LogTarget,
}

/// `bus_address`: the global `--bus-address` (or DBUS_SYSTEM_BUS_ADDRESS); the system bus if
/// none.
pub fn run(
    paths: &ConfigPaths,
    bus_address: Option<&str>,
    args: &DaemonArgs,
) -> anyhow::Result<()> {
    let logs_to = logging::init(args.log_target).context("cannot set up logging")?;
    let journal = match (&args.journal_namespace, &args.journal_directory) {
        (Some(ns), _) => Some(JournalSource::Namespace(ns.clone())),
        (None, Some(dir)) => Some(JournalSource::Directory(dir.clone())),
        // The configuration's [daemon] journal_directory, else the system journal.
        (None, None) => None,
    };
    let options = Options {
        config: paths.clone(),
        state_dir: args.state_dir.clone(),
        journal,
        flush_on_stop: args.flush_on_stop,
        bus: match (args.no_bus, bus_address) {
            (true, _) => None,
            (false, address) => Some(Bus::from_address(address)),
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        };
        Ok::<_, anyhow::Error>(daemon::run(options, shutdown).await)
    })?;
    result.map_err(|e| {
        tracing::error!("{e}");
        let code = if e.is_invalid_configuration() {
            ExitCode::Invalid
        } else {
            ExitCode::Failure
        };
        // Said once: the line above is on stderr already, or stderr is the journal it went
        // to (JOURNAL_STREAM: a service's stderr). Otherwise (the journal, from a terminal)
        // the terminal is told too.
        if logs_to == LogTarget::Stderr || std::env::var_os("JOURNAL_STREAM").is_some() {
            exit_logged(code, e)
        } else {
            exit_with(code, e)
        }
    })
}
