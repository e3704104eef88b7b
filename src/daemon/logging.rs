//! Log output: the journal with structured fields when there is one, else stderr.
//!
//! Events carry fields such as `JAIL`, `IP`, `BANTIME`, `FAILURES`; journald stores them as
//! journal fields of those names (no prefix), so `journalctl JAIL=sshd` works. The MESSAGE of
//! ban lines is a fixed format that the shipped recidive filter reads.

use std::path::Path;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where logs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// The journal if its socket exists, else stderr.
    Auto,
    Journal,
    Stderr,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Installs the global subscriber. Levels come from `BANHOUND_LOG` (tracing's EnvFilter
/// syntax), `info` by default. Returns where logs went.
pub fn init(target: LogTarget) -> Result<LogTarget, std::io::Error> {
    let filter = EnvFilter::try_from_env("BANHOUND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let use_journal = match target {
        LogTarget::Journal => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => Path::new(JOURNAL_SOCKET).exists(),
    };
    if use_journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                // journalctl -p info shows ban lines; debug ("Found ...") stays below it.
                let layer =
                    layer
                        .with_field_prefix(None)
                        .with_priority_mappings(PriorityMappings {
                            info: Priority::Informational,
                            debug: Priority::Debug,
                            ..PriorityMappings::new()
                        });
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init();
                return Ok(LogTarget::Journal);
            }
            Err(e) if target == LogTarget::Journal => return Err(e),
            Err(_) => {}
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(false),
        )
        .try_init();
    Ok(LogTarget::Stderr)
}
