//! `banhound generate`: shell completions and man pages from the clap definitions, so they
//! never drift from the real options. Hidden from `--help`; packaging runs it at build time.

use crate::cli::Cli;
use anyhow::Context;
use clap::{CommandFactory, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum GenerateArgs {
    /// Print the completion script for SHELL to stdout.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR.
    Man {
        /// Where the pages go (created if missing).
        dir: PathBuf,
    },
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    match args {
        GenerateArgs::Completions { shell } => {
            clap_complete::generate(*shell, &mut command, "banhound", &mut std::io::stdout());
            Ok(())
        }
        GenerateArgs::Man { dir } => write_man_pages(command, dir),
    }
}

fn write_man_pages(mut command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Propagates the global options into every subcommand's page.
    command.build();
    let mut pages = vec![("banhound".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("banhound-{}", sub.get_name());
        pages.push((
            name.clone(),
            sub.clone().display_name(name.clone()).bin_name(name),
        ));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut out)
            .with_context(|| format!("cannot render {name}.1"))?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
