//! The `banhound` binary: parses the command line, runs a subcommand, maps errors to exit
//! codes (0 success, 1 failure while running, 2 invalid configuration, filter or arguments,
//! 3 daemon not running, 4 access denied).

use banhound::cli::control::{self, Action};
use banhound::cli::{
    broken_pipe, check_config, daemon, generate, import_fail2ban, test_filter, Cli, Command, Exit,
    ExitCode,
};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    let paths = cli.config_paths();
    if !matches!(cli.command, Command::Daemon(_)) {
        broken_pipe::end_quietly_on_broken_pipe();
    }
    let result = match &cli.command {
        Command::TestFilter(args) => test_filter::run(&paths, args),
        Command::CheckConfig(args) => check_config::run(&paths, args),
        Command::Daemon(args) => daemon::run(&paths, cli.bus_address.as_deref(), args),
        Command::Generate(args) => generate::run(args),
        Command::Status(args) => control(&cli, Action::Status(args)),
        Command::Ban(args) => control(&cli, Action::Ban(args)),
        Command::Unban(args) => control(&cli, Action::Unban(args)),
        Command::Banned(args) => control(&cli, Action::Banned(args)),
        Command::Reload => control(&cli, Action::Reload),
        Command::Ignore(args) => control(&cli, Action::Ignore(args)),
        Command::Monitor(args) => control(&cli, Action::Monitor(args)),
        Command::Metrics(args) => control(&cli, Action::Metrics(args)),
        Command::ImportFail2ban(args) => import_fail2ban::run(&paths, args),
    };
    if let Err(err) = result {
        let exit = err.chain().find_map(|e| e.downcast_ref::<Exit>());
        let code = exit.map_or(ExitCode::Failure, |e| e.code);
        if !exit.is_some_and(|e| e.logged) {
            // One cause a line, outermost first; a cause the line before already quoted
            // (an error whose message includes its source's) is not said again.
            let mut said: Option<String> = None;
            for cause in err.chain() {
                let text = cause.to_string();
                match &said {
                    None => eprintln!("banhound: {text}"),
                    Some(before) if before.contains(&text) => continue,
                    Some(_) => eprintln!("  caused by: {text}"),
                }
                said = Some(text);
            }
        }
        std::process::exit(code as i32);
    }
}

fn control(cli: &Cli, action: Action<'_>) -> anyhow::Result<()> {
    control::run(cli.bus_address.as_deref(), action)
}
