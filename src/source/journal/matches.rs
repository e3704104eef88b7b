//! Journal matches per jail, with journalctl's semantics, and the dispatch of entries to jails.
//!
//! A jail names the entries it wants like journalctl does: `["_SYSTEMD_UNIT=sshd.service",
//! "+", "_COMM=sshd"]`. Terms on the same field are ORed, terms on different fields ANDed, and
//! `+` separates alternatives (OR groups). Admins already know this language from journalctl
//! and fail2ban's `journalmatch`, so banhound keeps it unchanged.
//!
//! One reader serves every jail: the union of all jails' groups is installed in sd-journal so
//! libsystemd skips unrelated entries without decoding them, and each entry that comes back is
//! then tested here against every jail's own expression (term equality only, no allocation) to
//! decide which jails receive it. That way an entry is read once however many jails want it.

use std::fmt;

/// Why a match expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("match {0:?} is not of the form FIELD=VALUE")]
    MissingEquals(String),
    #[error("match {0:?} has an empty field name")]
    EmptyField(String),
    #[error("match {term:?}: field name {field:?} is invalid (journal fields are A-Z, 0-9 and _, at most 64 characters, not starting with a digit)")]
    InvalidField { term: String, field: String },
    #[error("\"+\" at position {0} separates nothing: an OR group on either side is empty")]
    EmptyGroup(usize),
}

/// The longest field name sd-journal accepts.
const MAX_FIELD_LEN: usize = 64;

/// One `FIELD=VALUE` term, stored as the exact bytes a journal data object holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatchTerm {
    data: Vec<u8>,
    field_len: usize,
}

impl MatchTerm {
    pub fn parse(term: &str) -> Result<MatchTerm, MatchError> {
        let Some(eq) = term.find('=') else {
            return Err(MatchError::MissingEquals(term.to_string()));
        };
        let field = &term[..eq];
        if field.is_empty() {
            return Err(MatchError::EmptyField(term.to_string()));
        }
        if !is_valid_field_name(field) {
            return Err(MatchError::InvalidField {
                term: term.to_string(),
                field: field.to_string(),
            });
        }
        Ok(MatchTerm {
            data: term.as_bytes().to_vec(),
            field_len: eq,
        })
    }

    pub fn field(&self) -> &[u8] {
        &self.data[..self.field_len]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.field_len + 1..]
    }

    /// `FIELD=VALUE`, as sd_journal_add_match wants it and as entries store it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }
}

impl fmt::Display for MatchTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.data))
    }
}

/// The same rule sd-journal applies, so an expression accepted here is never refused there.
fn is_valid_field_name(field: &str) -> bool {
    field.len() <= MAX_FIELD_LEN
        && !field.starts_with(|c: char| c.is_ascii_digit())
        && field
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Terms that must all hold, per field: an entry satisfies the group when, for every field
/// named, one of that field's values is among the entry's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchGroup {
    /// Grouped by field, in first-appearance order; each inner list is ORed.
    by_field: Vec<Vec<MatchTerm>>,
}

impl MatchGroup {
    pub fn terms(&self) -> impl Iterator<Item = &MatchTerm> {
        self.by_field.iter().flatten()
    }

    fn push(&mut self, term: MatchTerm) {
        match self
            .by_field
            .iter_mut()
            .find(|same| same[0].field() == term.field())
        {
            Some(same) => {
                if !same.contains(&term) {
                    same.push(term)
                }
            }
            None => self.by_field.push(vec![term]),
        }
    }
}

/// A parsed journalctl-style match expression: OR of [`MatchGroup`]s. An empty expression
/// matches every entry (as journalctl without matches shows everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchExpr {
    groups: Vec<MatchGroup>,
}

impl MatchExpr {
    /// Matches every entry.
    pub fn all() -> MatchExpr {
        MatchExpr::default()
    }

    /// Parses journalctl arguments: `FIELD=VALUE` terms and `+` separators.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<MatchExpr, MatchError> {
        let mut groups = Vec::new();
        let mut current = MatchGroup {
            by_field: Vec::new(),
        };
        for (position, word) in words.iter().enumerate() {
            let word = word.as_ref();
            if word == "+" {
                if current.by_field.is_empty() {
                    return Err(MatchError::EmptyGroup(position));
                }
                groups.push(std::mem::replace(
                    &mut current,
                    MatchGroup {
                        by_field: Vec::new(),
                    },
                ));
            } else {
                current.push(MatchTerm::parse(word)?);
            }
        }
        if current.by_field.is_empty() {
            if !groups.is_empty() {
                return Err(MatchError::EmptyGroup(words.len() - 1));
            }
        } else {
            groups.push(current);
        }
        Ok(MatchExpr { groups })
    }

    pub fn matches_everything(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn groups(&self) -> &[MatchGroup] {
        &self.groups
    }
}

/// A group compiled against the shared term table: for each field, the term indexes ORed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CompiledGroup {
    clauses: Vec<Vec<usize>>,
}

impl CompiledGroup {
    fn holds(&self, hits: &[bool]) -> bool {
        self.clauses.iter().all(|c| c.iter().any(|&t| hits[t]))
    }
}

/// Every jail's expression, compiled for dispatch. Jails are numbered by their position in
/// the list given to [`JailMatches::new`]; that index is what entries are dispatched to.
#[derive(Clone, Debug)]
pub struct JailMatches {
    /// Distinct terms of all jails; an entry's data objects are compared with these.
    terms: Vec<MatchTerm>,
    /// Per jail: its groups (empty = every entry).
    jails: Vec<Vec<CompiledGroup>>,
    /// Distinct groups of all jails, in the order they are installed in sd-journal.
    union: Vec<MatchGroup>,
    union_is_everything: bool,
}

impl JailMatches {
    pub fn new(jails: Vec<MatchExpr>) -> JailMatches {
        let mut terms: Vec<MatchTerm> = Vec::new();
        let mut union: Vec<MatchGroup> = Vec::new();
        let mut compiled = Vec::with_capacity(jails.len());
        let union_is_everything = jails.iter().any(MatchExpr::matches_everything);
        for expr in &jails {
            let mut groups = Vec::with_capacity(expr.groups.len());
            for group in &expr.groups {
                let clauses = group
                    .by_field
                    .iter()
                    .map(|same| {
                        same.iter()
                            .map(|term| match terms.iter().position(|t| t == term) {
                                Some(i) => i,
                                None => {
                                    terms.push(term.clone());
                                    terms.len() - 1
                                }
                            })
                            .collect()
                    })
                    .collect();
                groups.push(CompiledGroup { clauses });
                if !union.contains(group) {
                    union.push(group.clone());
                }
            }
            compiled.push(groups);
        }
        JailMatches {
            terms,
            jails: compiled,
            union,
            union_is_everything,
        }
    }

    pub fn jail_count(&self) -> usize {
        self.jails.len()
    }

    pub fn terms(&self) -> &[MatchTerm] {
        &self.terms
    }

    /// The groups to install in sd-journal, ORed; `None` when some jail wants every entry (no
    /// match may then be installed, or that jail would miss entries).
    pub fn union(&self) -> Option<&[MatchGroup]> {
        (!self.union_is_everything).then_some(&self.union[..])
    }

    /// Marks in `hits` (one flag per term) the term equal to `data`, a `FIELD=VALUE` object.
    pub fn note_data(&self, data: &[u8], hits: &mut [bool]) {
        for (term, hit) in self.terms.iter().zip(hits.iter_mut()) {
            if term.data.len() == data.len() && term.data == data {
                *hit = true;
            }
        }
    }

    /// Appends to `out` the jails whose expression holds given the term `hits`.
    pub fn dispatch(&self, hits: &[bool], out: &mut Vec<usize>) {
        for (jail, groups) in self.jails.iter().enumerate() {
            if groups.is_empty() || groups.iter().any(|g| g.holds(hits)) {
                out.push(jail);
            }
        }
    }

    /// Which jails an entry with these `FIELD=VALUE` data objects goes to.
    pub fn jails_for<'d, I: IntoIterator<Item = &'d [u8]>>(&self, data: I) -> Vec<usize> {
        let mut hits = vec![false; self.terms.len()];
        for d in data {
            self.note_data(d, &mut hits);
        }
        let mut out = Vec::new();
        self.dispatch(&hits, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(words: &[&str]) -> MatchExpr {
        MatchExpr::parse(words).unwrap()
    }

    #[test]
    fn parses_terms_and_groups() {
        let e = expr(&["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]);
        assert_eq!(e.groups().len(), 2);
        let t: Vec<String> = e.groups()[1].terms().map(|t| t.to_string()).collect();
        assert_eq!(t, ["_COMM=sshd"]);
        let term = MatchTerm::parse("MESSAGE=a=b").unwrap();
        assert_eq!(term.field(), b"MESSAGE");
        assert_eq!(term.value(), b"a=b");
        assert_eq!(MatchTerm::parse("F=").unwrap().value(), b"");
        assert!(expr(&[]).matches_everything());
    }

    #[test]
    fn refuses_malformed_expressions() {
        assert_eq!(
            MatchExpr::parse(&["_COMM"]),
            Err(MatchError::MissingEquals("_COMM".into()))
        );
        assert_eq!(
            MatchExpr::parse(&["=x"]),
            Err(MatchError::EmptyField("=x".into()))
        );
        assert!(matches!(
            MatchExpr::parse(&["_comm=sshd"]),
            Err(MatchError::InvalidField { .. })
        ));
        assert!(matches!(
            MatchExpr::parse(&["1ABC=x"]),
            Err(MatchError::InvalidField { .. })
        ));
        let long = format!("{}=x", "A".repeat(65));
        assert!(matches!(
            MatchExpr::parse(&[long.as_str()]),
            Err(MatchError::InvalidField { .. })
        ));
        assert_eq!(
            MatchExpr::parse(&["+", "_COMM=sshd"]),
            Err(MatchError::EmptyGroup(0))
        );
        assert_eq!(
            MatchExpr::parse(&["_COMM=sshd", "+"]),
            Err(MatchError::EmptyGroup(1))
        );
        assert_eq!(
            MatchExpr::parse(&["_COMM=a", "+", "+", "_COMM=b"]),
            Err(MatchError::EmptyGroup(2))
        );
    }

    #[test]
    fn same_field_ors_different_fields_and() {
        let m = JailMatches::new(vec![expr(&["_COMM=sshd", "_COMM=sshd-session", "_PID=7"])]);
        assert_eq!(m.jails_for([&b"_COMM=sshd"[..], b"_PID=7"]), [0]);
        assert_eq!(m.jails_for([&b"_COMM=sshd-session"[..], b"_PID=7"]), [0]);
        assert!(m.jails_for([&b"_COMM=sshd"[..], b"_PID=8"]).is_empty());
        assert!(m.jails_for([&b"_COMM=sshd"[..]]).is_empty());
        // Prefix of a value is not the value.
        assert!(m.jails_for([&b"_COMM=sshd2"[..], b"_PID=7"]).is_empty());
    }

    #[test]
    fn dispatches_to_every_jail_that_matches() {
        let m = JailMatches::new(vec![
            expr(&["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]),
            expr(&["SYSLOG_IDENTIFIER=postfix/smtpd"]),
            expr(&["_COMM=sshd", "_HOSTNAME=a"]),
            MatchExpr::all(),
        ]);
        assert_eq!(m.jails_for([&b"_SYSTEMD_UNIT=sshd.service"[..]]), [0, 3]);
        assert_eq!(m.jails_for([&b"_COMM=sshd"[..], b"_HOSTNAME=a"]), [0, 2, 3]);
        assert_eq!(
            m.jails_for([&b"SYSLOG_IDENTIFIER=postfix/smtpd"[..]]),
            [1, 3]
        );
        assert_eq!(m.jails_for([&b"X=y"[..]]), [3]);
        // A jail that wants everything means nothing may be filtered by sd-journal.
        assert!(m.union().is_none());
    }

    #[test]
    fn union_deduplicates_groups_and_terms() {
        let m = JailMatches::new(vec![
            expr(&["_COMM=sshd", "+", "_SYSTEMD_UNIT=ssh.service"]),
            expr(&["_COMM=sshd"]),
        ]);
        let union = m.union().unwrap();
        assert_eq!(union.len(), 2);
        assert_eq!(m.terms().len(), 2);
        assert_eq!(m.jails_for([&b"_COMM=sshd"[..]]), [0, 1]);
        assert_eq!(m.jails_for([&b"_SYSTEMD_UNIT=ssh.service"[..]]), [0]);
    }
}
