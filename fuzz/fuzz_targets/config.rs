//! The configuration parser and validator on arbitrary text: every input must give
//! `Settings` or a `ConfigError`, never a panic.
//!
//! The input is one or two files (split at the first 0xFF byte, which no UTF-8 text holds):
//! the shipped layer and the admin's, so merging across layers is exercised too.
//!
//! Jails find their filters by name in fuzz/config-filters/: a one-regex filter under each
//! shipped filter's name (with a mode). Compiling the shipped filters on every input would
//! leave a few executions a second for the configuration itself; their regexes are the
//! `filter_compile` and `matcher` targets' subject.
#![no_main]

use banhound::config::error::SourceText;
use banhound::config::{load_sources, ConfigPaths};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let paths = ConfigPaths {
        defaults_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config-filters")),
        config_dir: PathBuf::from("/nonexistent/banhound-fuzz"),
        main_file: None,
    };
    let sources: Vec<SourceText> = data
        .splitn(2, |&b| b == 0xFF)
        .enumerate()
        .map(|(i, text)| SourceText {
            path: PathBuf::from(format!("layer{i}.toml")),
            text: String::from_utf8_lossy(text).into_owned(),
        })
        .collect();
    match load_sources(&paths, sources) {
        Ok(settings) => {
            for jail in &settings.jails {
                // What the daemon does next with a valid configuration.
                let policy = jail.policy.to_policy(&["192.0.2.1".parse().unwrap()]);
                assert!(policy.maxretry >= 1);
                assert!(!policy.findtime.is_zero());
                let _ = jail
                    .filter
                    .filter
                    .matcher()
                    .match_line(b"Failed password for root from 192.0.2.7 port 22 ssh2");
            }
        }
        Err(e) => {
            // Errors are shown to the admin: rendering them must not fail either.
            let _ = e.to_string();
        }
    }
});
