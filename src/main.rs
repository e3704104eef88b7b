//! The `banhound` binary: parses the command line, runs a subcommand, maps errors to exit
//! codes (0 success, 1 failure while running, 2 invalid configuration, filter or arguments).

use banhound::cli::{check_config, import_fail2ban, test_filter, Cli, Command, Exit, ExitCode};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    let paths = cli.config_paths();
    let result = match &cli.command {
        Command::TestFilter(args) => test_filter::run(&paths, args),
        Command::CheckConfig(args) => check_config::run(&paths, args),
        Command::ImportFail2ban(args) => import_fail2ban::run(&paths, args),
    };
    if let Err(err) = result {
        let code = err
            .chain()
            .find_map(|e| e.downcast_ref::<Exit>())
            .map_or(ExitCode::Failure, |e| e.code);
        // One cause a line, outermost first.
        let mut causes = err.chain();
        if let Some(first) = causes.next() {
            eprintln!("banhound: {first}");
        }
        for cause in causes {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(code as i32);
    }
}
