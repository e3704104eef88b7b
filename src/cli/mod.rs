//! The command line: argument definitions, the subcommands that run without the daemon, and
//! those that control it over D-Bus ([`control`]).
//!
//! Subcommands return `anyhow::Result`; only `main` turns errors into exit codes, through
//! [`ExitCode`] carried in the error chain where a specific code matters.

pub mod broken_pipe;
pub mod check_config;
pub mod control;
pub mod daemon;
pub mod generate;
pub mod import_fail2ban;
pub mod metrics;
pub mod test_filter;
pub mod time_arg;

use crate::config::ConfigPaths;
use clap::{Parser, Subcommand};
use std::fmt;
use std::path::PathBuf;

/// The heading global options are listed under in every subcommand's help, apart from the
/// subcommand's own.
const GLOBAL: &str = "Global options";

/// banhound: bans addresses that fail to authenticate, reading the systemd journal.
#[derive(Debug, Parser)]
#[command(name = "banhound", version, about, long_about = None)]
pub struct Cli {
    /// Use this file instead of /etc/banhound/banhound.toml and its jail.d/ drop-ins
    /// (the shipped defaults still apply underneath).
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// The admin's configuration directory.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "DIR",
        default_value = "/etc/banhound"
    )]
    pub config_dir: PathBuf,
    /// The shipped defaults (banhound.toml, jail.d/, filters/).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "DIR",
        env = "BANHOUND_DEFAULTS_DIR",
        default_value = "/usr/lib/banhound"
    )]
    pub defaults_dir: PathBuf,
    /// Use this D-Bus address instead of the system bus
    /// (e.g. unix:path=/run/dbus/system_bus_socket): control commands reach the daemon
    /// there, and `banhound daemon` serves its control interface there.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "ADDRESS",
        env = "DBUS_SYSTEM_BUS_ADDRESS"
    )]
    pub bus_address: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn config_paths(&self) -> ConfigPaths {
        ConfigPaths {
            defaults_dir: self.defaults_dir.clone(),
            config_dir: self.config_dir.clone(),
            main_file: self.config.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a filter over a log file, a line or stdin and report what it finds (like
    /// fail2ban-regex).
    TestFilter(Box<test_filter::TestFilterArgs>),
    /// Validate the configuration without starting anything (like `nginx -t`).
    CheckConfig(check_config::CheckConfigArgs),
    /// Run the service: follow the journal, ban offenders, restore bans across restarts.
    Daemon(daemon::DaemonArgs),
    /// Show the daemon's status, or one jail's in detail.
    Status(control::StatusArgs),
    /// Ban an address in a jail.
    Ban(control::BanArgs),
    /// Lift a ban (in every jail unless --jail), or every ban with --all.
    Unban(control::UnbanArgs),
    /// List active bans, or the bans covering one address.
    Banned(control::BannedArgs),
    /// Make the daemon re-read its configuration.
    Reload,
    /// Add a network to a jail's ignore list, or remove it, until the next reload.
    Ignore(control::IgnoreArgs),
    /// Print bans and unbans as they happen.
    Monitor(control::MonitorArgs),
    /// Print the daemon's figures for Prometheus (text format or OpenMetrics), or write
    /// them for node_exporter's textfile collector.
    Metrics(metrics::MetricsArgs),
    /// Generate shell completions or man pages (packaging runs it at build time).
    #[command(subcommand)]
    Generate(generate::GenerateArgs),
    /// Write banhound configuration equivalent to fail2ban's jails (default /etc/fail2ban),
    /// with a report of what could not be mapped.
    ImportFail2ban(import_fail2ban::ImportFail2banArgs),
}

/// Exit codes, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Something failed while running (I/O, the system).
    Failure = 1,
    /// The configuration, a filter or the arguments are invalid (for control commands: no
    /// such jail, bad address or duration, an address that is never banned, or an unban of
    /// an address that is not banned).
    Invalid = 2,
    /// The daemon is not running (nothing owns its D-Bus name) or the bus cannot be reached.
    NotRunning = 3,
    /// The caller may not do this (only root may change bans).
    AccessDenied = 4,
}

/// An error marked with the exit code it should produce. It displays as the error it wraps
/// and continues with that error's causes, so the marker adds no line to the message.
/// (A marker added as anyhow context would be invisible to `chain()` downcasts, and every
/// invalid input would exit 1.)
#[derive(Debug)]
pub struct Exit {
    pub code: ExitCode,
    /// The subcommand has already logged the error where its reader sees it: `main` only
    /// exits with the code (the daemon's fatal error must not be logged twice).
    pub logged: bool,
    error: anyhow::Error,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Exit {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.chain().nth(1)
    }
}

/// Wraps an error as invalid input (exit code 2).
pub fn invalid(err: impl Into<anyhow::Error>) -> anyhow::Error {
    exit_with(ExitCode::Invalid, err)
}

/// Wraps an error with the exit code it should produce.
pub fn exit_with(code: ExitCode, err: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        logged: false,
        error: err.into(),
    })
}

/// As [`exit_with`], for an error already logged (see [`Exit::logged`]).
pub fn exit_logged(code: ExitCode, err: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        logged: true,
        error: err.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand, with the path of subcommands leading to it.
    fn all_args(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Arg)>) {
        for arg in command.get_arguments() {
            out.push((path.clone(), arg.clone()));
        }
        for sub in command.get_subcommands() {
            all_args(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_help_and_global_ones_are_set_apart() {
        let mut command = Cli::command();
        command.build();
        let mut args = Vec::new();
        all_args(&command, "banhound".into(), &mut args);
        let builtin = ["help", "version"];
        let missing: Vec<String> = args
            .iter()
            .filter(|(_, a)| !builtin.contains(&a.get_id().as_str()) && a.get_help().is_none())
            .map(|(path, a)| format!("{path}: {}", a.get_id()))
            .collect();
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
        let misplaced: Vec<String> = args
            .iter()
            .filter(|(_, a)| a.is_global_set() != (a.get_help_heading() == Some(GLOBAL)))
            .map(|(path, a)| format!("{path}: {}", a.get_id()))
            .collect();
        assert!(
            misplaced.is_empty(),
            "global options out of their heading: {misplaced:?}"
        );
        assert!(command.get_subcommands().all(|s| !s.is_hide_set()));
    }
}
