//! Reading fail2ban's own configuration, so its filters run unchanged under banhound.
//!
//! fail2ban's files are INI with includes and two kinds of interpolation ([`ini`]); a filter
//! is a set of Python-dialect regexes resolved from them ([`filter`]). The regexes are
//! compiled by [`crate::engine::filter`], which picks a linear-time or a bounded
//! backtracking engine per regex.

pub mod filter;
pub mod ini;
pub mod jail;

pub use filter::{
    find_filter_file, load, load_by_reference, Fail2banFilter, Fail2banFilterError, FilterReference,
};

/// Where fail2ban keeps its configuration on a stock install.
pub const DEFAULT_DIR: &str = "/etc/fail2ban";
