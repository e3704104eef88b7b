//! `banhound check-config`: loads and validates the whole configuration offline.

use crate::cli::invalid;
use crate::config::{self, ConfigPaths, JailSource};
use crate::firewall::BackendKind;
use clap::Args;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Print only errors.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(paths: &ConfigPaths, args: &CheckConfigArgs) -> anyhow::Result<()> {
    let settings = config::load(paths).map_err(invalid)?;
    if args.quiet {
        return Ok(());
    }
    println!("configuration OK");
    for f in &settings.files {
        println!("  read {}", f.display());
    }
    println!(
        "  firewall checked and repaired {}",
        settings
            .daemon
            .reconcile_interval
            .map_or("never (reconcile_interval = \"off\")".to_string(), |i| {
                format!("every {}", crate::engine::time::format_duration(i))
            })
    );
    if let Some(dir) = &settings.daemon.journal_directory {
        println!(
            "  journal jails read the journal directory {} (journal_directory)",
            dir.display()
        );
    }
    for j in &settings.jails {
        let source = match &j.source {
            JailSource::Journal { matches } => format!("journal {}", matches.join(" ")),
            JailSource::Files { paths } => format!(
                "files {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        let mode = j.filter.mode.as_deref().unwrap_or("normal");
        println!(
            "  jail {} ({}): filter {} [{mode}], {}; maxretry {} in {}, bantime {}, backend {}, chains {}",
            j.name,
            if j.enabled { "enabled" } else { "disabled" },
            j.filter.name,
            source,
            j.policy.maxretry,
            crate::engine::time::format_duration(j.policy.findtime),
            j.policy.bantime,
            j.backend,
            j.rules.chains.names().join(","),
        );
        if j.backend == BackendKind::Firewalld && j.rules.chains.forward {
            println!(
                "    note: firewalld accepts DNATed connections (published container ports, port forwards) before any policy, so jail {} does not block those on forward; use backend = \"nftables\" for them",
                j.name
            );
        }
    }
    Ok(())
}
