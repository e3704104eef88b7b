//! The shipped filters (conf/filters/*.toml), each loaded by the production loader in every
//! one of its modes. Shared by tests/shipped_filters.rs (fixtures) and, through
//! tests/injection, by tests/log_injection.rs and tests/redos.rs.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use banhound::config::filter_file::FilterDefinition;
use banhound::config::load_filter_file;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The base filter's mode name; a mode adds its failregex/ignoreregex to the base ones.
pub const BASE_MODE: &str = "normal";

/// A shipped filter in every one of its modes.
pub struct ShippedFilter {
    pub name: String,
    pub modes: BTreeMap<String, FilterDefinition>,
}

impl ShippedFilter {
    pub fn load(name: &str, path: &Path) -> ShippedFilter {
        let base = load_filter_file(path, name, None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut modes = BTreeMap::new();
        for mode in base.modes.clone() {
            let spanned = Spanned::new(0..0, mode.clone());
            let def = load_filter_file(path, name, Some(&spanned))
                .unwrap_or_else(|e| panic!("{} mode {mode}: {e}", path.display()));
            modes.insert(mode, def);
        }
        modes.insert(BASE_MODE.to_string(), base);
        ShippedFilter {
            name: name.to_string(),
            modes,
        }
    }

    pub fn base(&self) -> &FilterDefinition {
        &self.modes[BASE_MODE]
    }

    /// The program name the service logs under (files and journal rendering).
    pub fn ident(&self) -> &[u8] {
        self.base()
            .identifiers
            .first()
            .map_or(b"nginx", |i| i.as_bytes())
    }
}

/// (name, path) of every shipped filter, sorted by name.
pub fn filter_files() -> Vec<(String, PathBuf)> {
    let mut files: Vec<_> = std::fs::read_dir(conf_filters())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no shipped filters found");
    files
}

/// Every shipped filter, loaded, sorted by name.
pub fn shipped_filters() -> Vec<ShippedFilter> {
    filter_files()
        .iter()
        .map(|(name, path)| ShippedFilter::load(name, path))
        .collect()
}

fn conf_filters() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/filters")
}
