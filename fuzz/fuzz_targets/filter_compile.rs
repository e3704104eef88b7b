//! The filter compiler (fail2ban-style tags, Python-dialect translation, prefregex,
//! ignoreregex, the literal prefilter, both regex engines) on arbitrary patterns: every
//! input must compile or give a `FilterError`, never a panic; a filter that compiles must
//! then match a line without panicking.
//!
//! Input layout: the first byte holds flags (bit 0: fail2ban dialect, bit 1: the first part
//! is a prefregex, bit 2: the last part is a log line to match); the rest is split at 0xFF
//! bytes into parts. A part starting with '!' is an ignoreregex, any other a failregex.
#![no_main]

use banhound::engine::filter::{Dialect, Filter, FilterSpec, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts: Vec<String> = rest
        .split(|&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let line = if flags & 4 != 0 && parts.len() > 1 {
        parts.pop()
    } else {
        None
    };
    let mut spec = FilterSpec {
        dialect: if flags & 1 != 0 {
            Dialect::Fail2ban
        } else {
            Dialect::Banhound
        },
        ..FilterSpec::default()
    };
    let mut parts = parts.into_iter();
    if flags & 2 != 0 {
        spec.prefregex = parts.next();
    }
    for part in parts {
        match part.strip_prefix('!') {
            Some(ignore) => spec.ignoreregex.push(ignore.to_string()),
            None => spec.failregex.push(part),
        }
    }
    let filter = match Filter::compile(&spec) {
        Ok(filter) => filter,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for i in 0..filter.failregex_count() {
        let _ = (filter.failregex_source(i), filter.failregex_engine(i));
    }
    let mut matcher = filter.matcher();
    let line =
        line.unwrap_or_else(|| "Failed password for root from 192.0.2.7 port 22 ssh2".into());
    if let Outcome::Failure(f) = matcher.match_line(line.as_bytes()) {
        assert!(f.regex < filter.failregex_count());
        for (name, value) in matcher.fields(f.regex, line.as_bytes()) {
            assert!(!name.is_empty());
            let _ = value;
        }
    }
});
