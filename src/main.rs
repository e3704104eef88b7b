//! The `banhound` binary: parses the command line, runs a subcommand, maps errors to exit codes.

fn main() {}
