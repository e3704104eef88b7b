//! Span extraction: what a match names, read from its capture slots — the address (parsed,
//! never guessed), the network prefix, the user.

use super::split::SplitCache;
use super::tags::CompiledRegex;
use crate::engine::address::{parse_address, Host};
use ipnet::IpNet;
use regex::bytes::CaptureLocations;

/// Capture positions of the last match of one regex.
#[derive(Debug)]
pub(super) enum Slots {
    Linear(CaptureLocations),
    Backtracking(Vec<Option<(usize, usize)>>),
    /// A regex whose spans [`Split`](super::split::Split) takes: the spans, and the full
    /// regex's locations for the lines it leaves undecided.
    Split {
        spans: Vec<Option<(usize, usize)>>,
        locs: CaptureLocations,
        cache: Box<SplitCache>,
    },
}

impl Slots {
    pub(super) fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self {
            Slots::Linear(l) => l.get(i),
            Slots::Backtracking(v) | Slots::Split { spans: v, .. } => v.get(i).copied().flatten(),
        }
    }
}

/// `<F-USER>`, or when it is missing or empty the first non-empty `<F-ALT_USER…>` (an
/// empty user stays empty when no alternative has one).
pub(super) fn user_of<'a>(regex: &CompiledRegex, locs: &Slots, text: &'a [u8]) -> Option<&'a [u8]> {
    let mut first = None;
    for (s, e) in regex.user_groups.iter().filter_map(|&g| locs.get(g)) {
        let user = &text[s..e];
        if !user.is_empty() {
            return Some(user);
        }
        first.get_or_insert(user);
    }
    first
}

/// The address the regex captured, `Ok(None)` if none of its address tags took part.
pub(super) fn address_of<'a>(
    regex: &CompiledRegex,
    locs: &Slots,
    text: &'a [u8],
) -> Result<Option<Host<'a>>, InvalidAddress> {
    let Some((s, e)) = regex.address_groups.iter().find_map(|&g| locs.get(g)) else {
        return Ok(None);
    };
    // The brackets an address tag may take around an address, each on its own: a regex
    // that goes on with `\b` or `:` leaves the closing one to the text that follows.
    let span = &text[s..e];
    let span = span.strip_prefix(b"[").unwrap_or(span);
    let span = span.strip_suffix(b"]").unwrap_or(span);
    let as_str = std::str::from_utf8(span).map_err(|_| InvalidAddress)?;
    let ip = match parse_address(as_str) {
        Some(ip) => ip,
        None if span.contains(&b':') || span.iter().all(|b| b.is_ascii_digit() || *b == b'.') => {
            return Err(InvalidAddress)
        }
        None => return Ok(Some(Host::Name(span))),
    };
    let Some((s, e)) = regex.cidr_groups.iter().find_map(|&g| locs.get(g)) else {
        return Ok(Some(Host::Ip(ip)));
    };
    let prefix: u8 = std::str::from_utf8(&text[s..e])
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(InvalidAddress)?;
    let net = IpNet::new(ip, prefix).map_err(|_| InvalidAddress)?;
    Ok(Some(if prefix == net.max_prefix_len() {
        Host::Ip(ip)
    } else {
        Host::Net(net.trunc())
    }))
}

/// An address span that is no address (e.g. `999.1.1.1`): the line is a miss, never a guess.
pub(super) struct InvalidAddress;
