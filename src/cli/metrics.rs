//! `banhound metrics`: the daemon's figures for Prometheus, asked of the
//! running daemon over D-Bus (`GetMetrics`, rendered by [`crate::metrics`] exactly as the
//! `[metrics] listen` endpoint serves them), printed or written for node_exporter's textfile
//! collector.
//!
//! The textfile collector reads its directory at every scrape, so a file must never be seen
//! half written: `--output` writes a temporary file beside it and renames it into place.

use crate::bus::proxy::ManagerProxy;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `banhound metrics`
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// `text`: Prometheus' text format 0.0.4, what node_exporter's textfile collector
    /// reads; `openmetrics`: OpenMetrics 1.0.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write the text to FILE (atomically: a temporary file beside it, renamed) instead of
    /// standard output, e.g. into node_exporter's textfile directory as `banhound.prom`.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Text,
    Openmetrics,
}

/// Asks the daemon for its metrics and prints or writes them.
pub async fn print(manager: &ManagerProxy<'_>, args: &MetricsArgs) -> anyhow::Result<()> {
    let text = manager
        .get_metrics(match args.format {
            FormatArg::Text => "text",
            FormatArg::Openmetrics => "openmetrics",
        })
        .await
        .map_err(super::control::bus_error)?;
    match &args.output {
        Some(path) => write_atomically(path, text.as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                // `banhound metrics | head` is not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("cannot write to standard output"),
            }
        }
    }
}

fn write_atomically(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    // A dot file: the textfile collector reads only `*.prom`.
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        // Readable by the collector, which usually runs as another user.
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
