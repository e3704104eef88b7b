//! A fail2ban `filter.d/NAME.conf` turned into a banhound filter.
//!
//! fail2ban builds a filter's regexes in two passes over the merged INI: configparser's
//! `%(name)s` interpolation, then its own `<name>` substitution, which may nest
//! (`<mdre-<mode>>`) and reach into other sections (`<lt_file/__prefix_line>`). Values come,
//! lowest precedence first, from `[DEFAULT]`, `[Definition]`, `[Init]` and the parameters
//! given at use (`sshd[mode=aggressive]`). The result is a list of regexes in Python's
//! dialect, which [`crate::engine::filter`] compiles (on the backtracking engine where a
//! regex needs it).
//!
//! fail2ban regexes match the whole line after its date (`^%(__prefix_line)s...`), so the
//! filter gets [`LineFormat::AfterDate`]; journal entries are given to it rendered as
//! `HOST IDENT[PID]: MESSAGE`, the way fail2ban's systemd backend presents them.
//! Multi-line filters (`maxlines`, `<F-MLFID>` sessions) and `datepattern` are applied by
//! the engine; what has no banhound equivalent (a `datepattern` that does not compile) is listed in
//! [`Fail2banFilter::notes`] rather than silently dropped.

use super::ini::{Ini, IniError};
use crate::config::filter_file::FilterDefinition;
use crate::engine::datepattern::DatePattern;
use crate::engine::filter::{Dialect, Filter, FilterError, FilterSpec};
use crate::engine::prepare::LineFormat;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a fail2ban filter could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Fail2banFilterError {
    #[error(transparent)]
    Ini(#[from] IniError),
    #[error("{0}: no [Definition] section, so not a fail2ban filter")]
    NoDefinition(PathBuf),
    #[error("{path}: {source}")]
    Regex {
        path: PathBuf,
        #[source]
        source: FilterError,
    },
    #[error("filter reference {0:?}: expected NAME or NAME[key=value, ...]")]
    BadReference(String),
    #[error("no fail2ban filter {name:?} in {dir}")]
    NotFound { name: String, dir: PathBuf },
}

/// `NAME[key=value, ...]`, as jails write `filter = sshd[mode=aggressive]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterReference {
    pub name: String,
    pub params: BTreeMap<String, String>,
}

impl FilterReference {
    pub fn parse(text: &str) -> Result<FilterReference, Fail2banFilterError> {
        let bad = || Fail2banFilterError::BadReference(text.to_string());
        let text = text.trim();
        let (name, params) = match text.find('[') {
            None => (text, BTreeMap::new()),
            Some(open) => {
                let inner = text[open + 1..].strip_suffix(']').ok_or_else(bad)?;
                (&text[..open], parse_params(inner).ok_or_else(bad)?)
            }
        };
        if name.is_empty() || name.contains(['[', ']', '=']) {
            return Err(bad());
        }
        Ok(FilterReference {
            name: name.trim().to_string(),
            params,
        })
    }
}

/// `k=v, k2="v, with comma"`: values may be quoted with ' or ".
fn parse_params(inner: &str) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        if key.is_empty() {
            return None;
        }
        let after = rest[eq + 1..].trim_start();
        let (value, remainder) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = after[1..].find(q)? + 1;
                (&after[1..end], &after[end + 1..])
            }
            _ => match after.find(',') {
                Some(c) => (after[..c].trim_end(), &after[c..]),
                None => (after.trim_end(), ""),
            },
        };
        params.insert(key.to_string(), value.to_string());
        let remainder = remainder.trim_start();
        rest = match remainder.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if remainder.is_empty() => "",
            None => return None,
        };
    }
    Some(params)
}

/// A fail2ban filter, resolved: the regexes and settings banhound uses, plus notes on what
/// it does not.
#[derive(Debug)]
pub struct Fail2banFilter {
    pub path: PathBuf,
    pub spec: FilterSpec,
    /// journalctl-style words, `+` between OR groups.
    pub journalmatch: Vec<String>,
    /// The `datepattern` as written (after interpolation).
    pub datepattern: Option<String>,
    /// It compiled: file lines take their date from it.
    pub date_pattern: Option<DatePattern>,
    pub maxlines: usize,
    /// Settings banhound does not apply, in words, for reports.
    pub notes: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Finds `NAME` in `DIR/filter.d/`: `NAME.conf`, or only `NAME.local`.
pub fn find_filter_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let base = dir.join("filter.d");
    ["conf", "local"]
        .iter()
        .map(|ext| base.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// Resolves a reference (`sshd[mode=aggressive]`) in the fail2ban directory `dir`.
pub fn load_by_reference(
    dir: &Path,
    reference: &FilterReference,
) -> Result<Fail2banFilter, Fail2banFilterError> {
    let path =
        find_filter_file(dir, &reference.name).ok_or_else(|| Fail2banFilterError::NotFound {
            name: reference.name.clone(),
            dir: dir.join("filter.d"),
        })?;
    load(&path, &reference.params)
}

/// Reads a filter file with its includes and resolves its regexes for `params`.
pub fn load(
    path: &Path,
    params: &BTreeMap<String, String>,
) -> Result<Fail2banFilter, Fail2banFilterError> {
    let ini = Ini::load(path)?;
    resolve(&ini, path, params)
}

const DEFINITION: &str = "Definition";

fn resolve(
    ini: &Ini,
    path: &Path,
    params: &BTreeMap<String, String>,
) -> Result<Fail2banFilter, Fail2banFilterError> {
    if !ini.has_section(DEFINITION) {
        return Err(Fail2banFilterError::NoDefinition(path.to_path_buf()));
    }
    // Parameters beat [Init], which beats [Definition] and [DEFAULT].
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for key in ini.keys("Init") {
        if let Some(v) = ini.raw("Init", key) {
            vars.insert(key.to_string(), v.to_string());
        }
    }
    vars.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
    let resolver = Resolver { ini, vars: &vars };

    let mut notes = Vec::new();
    let list = |key: &str| -> Result<Vec<String>, IniError> {
        Ok(resolver
            .value(key)?
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    };
    let failregex = list("failregex")?;
    let ignoreregex = list("ignoreregex")?;
    let prefregex = resolver
        .value("prefregex")?
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let journalmatch: Vec<String> = resolver
        .value("journalmatch")?
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let datepattern = resolver
        .value("datepattern")?
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let maxlines = match resolver.value("maxlines")? {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_MAXLINES).contains(&n) => n,
            _ => {
                notes.push(format!(
                    "maxlines = {}: not a number from 1 to {MAX_MAXLINES}; 1 is used",
                    v.trim()
                ));
                1
            }
        },
        None => 1,
    };
    let date_pattern = match &datepattern {
        None => None,
        Some(dp) => match DatePattern::parse(dp) {
            Ok(p) => Some(p),
            Err(e) => {
                notes.push(format!(
                    "datepattern {dp:?} is not applied ({e}): the standard date templates are used"
                ));
                None
            }
        },
    };
    Ok(Fail2banFilter {
        path: path.to_path_buf(),
        spec: FilterSpec {
            prefregex,
            failregex,
            ignoreregex,
            dialect: Dialect::Fail2ban,
        },
        journalmatch,
        datepattern,
        date_pattern,
        maxlines,
        notes,
        files: ini.files.clone(),
    })
}

/// The largest `maxlines` taken: each line re-searches the whole window, so a window is
/// kept small (fail2ban's stock filters use at most 20).
const MAX_MAXLINES: usize = 100;

/// Looks values up with fail2ban's precedence and expands both kinds of references.
struct Resolver<'a> {
    ini: &'a Ini,
    vars: &'a BTreeMap<String, String>,
}

/// Bounds `<name>` substitution passes (fail2ban bounds them too: values may refer in loops).
const MAX_SUBSTITUTIONS: usize = 64;

impl Resolver<'_> {
    /// The value of a [Definition] key, fully expanded; `None` when not set.
    fn value(&self, key: &str) -> Result<Option<String>, IniError> {
        let Some(raw) = self.lookup(key) else {
            return Ok(None);
        };
        let interpolated = self.ini.interpolate(DEFINITION, &raw, self.vars)?;
        Ok(Some(self.substitute(&interpolated)?))
    }

    /// A raw value by `<name>`: parameters and [Init], then [Definition]/[DEFAULT], or
    /// `section/key`.
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.ini.raw(DEFINITION, name) {
            return Some(v.to_string());
        }
        let (section, key) = name.split_once('/')?;
        if !self.ini.has_section(section) {
            return None;
        }
        self.ini.raw(section, key).map(str::to_string)
    }

    fn interpolated(&self, name: &str) -> Result<Option<String>, IniError> {
        let Some(raw) = self.lookup(name) else {
            return Ok(None);
        };
        let section = match name.split_once('/') {
            Some((s, _)) if self.ini.has_section(s) && !self.vars.contains_key(name) => s,
            _ => DEFINITION,
        };
        self.ini.interpolate(section, &raw, self.vars).map(Some)
    }

    /// Replaces `<name>` by the value of `name` wherever `name` is a known key, innermost
    /// first, until nothing changes. Tags such as `<HOST>` are not keys and stay.
    fn substitute(&self, value: &str) -> Result<String, IniError> {
        let mut current = value.to_string();
        for _ in 0..MAX_SUBSTITUTIONS {
            let mut out = String::with_capacity(current.len());
            let mut changed = false;
            let mut rest = current.as_str();
            while let Some(open) = rest.find('<') {
                out.push_str(&rest[..open]);
                let tail = &rest[open..];
                let candidate = tail[1..].find('>').map(|end| &tail[1..1 + end]);
                match candidate {
                    Some(name)
                        if !name.is_empty()
                            && !name.contains(['<', ' ', '\t'])
                            // `(?P<name>...)` is a group, never a reference.
                            && !out.ends_with("?P") =>
                    {
                        match self.interpolated(name)? {
                            Some(v) => {
                                out.push_str(&v);
                                changed = true;
                            }
                            None => out.push_str(&tail[..name.len() + 2]),
                        }
                        rest = &tail[name.len() + 2..];
                    }
                    _ => {
                        out.push('<');
                        rest = &tail[1..];
                    }
                }
            }
            out.push_str(rest);
            if !changed {
                return Ok(out);
            }
            current = out;
        }
        Err(IniError::Interpolation {
            key: value.chars().take(60).collect(),
            message: "<tag> substitution does not terminate (a loop?)".into(),
        })
    }
}

impl Fail2banFilter {
    /// Compiles the regexes into a banhound filter definition named `name`.
    pub fn to_definition(&self, name: &str) -> Result<FilterDefinition, Fail2banFilterError> {
        let filter = Filter::compile_lines(&self.spec, self.maxlines).map_err(|source| {
            Fail2banFilterError::Regex {
                path: self.path.clone(),
                source,
            }
        })?;
        let description = Some(format!(
            "fail2ban filter {}{}",
            self.path.display(),
            if self.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.notes.join("; "))
            }
        ));
        Ok(FilterDefinition {
            name: name.to_string(),
            description,
            journalmatch: self.journalmatch.clone(),
            identifiers: Vec::new(),
            format: LineFormat::AfterDate,
            datepattern: self.date_pattern.clone(),
            mode: None,
            modes: Vec::new(),
            filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_with_parameters() {
        let r = FilterReference::parse("sshd[mode=aggressive, publickey=invalid]").unwrap();
        assert_eq!(r.name, "sshd");
        assert_eq!(r.params["mode"], "aggressive");
        assert_eq!(r.params["publickey"], "invalid");
        let q = FilterReference::parse("sshd[__pam_auth='pam_ldap, x', mode=ddos]").unwrap();
        assert_eq!(q.params["__pam_auth"], "pam_ldap, x");
        assert_eq!(q.params["mode"], "ddos");
        assert_eq!(FilterReference::parse("sshd").unwrap().params.len(), 0);
        assert!(FilterReference::parse("sshd[mode").is_err());
        assert!(FilterReference::parse("[x=y]").is_err());
        assert!(FilterReference::parse("sshd[x]").is_err());
    }

    const FILTER: &str = "\
[INCLUDES]
before = base.conf
[DEFAULT]
_daemon = food
[Definition]
prefregex = ^%(__prefix)s<F-CONTENT>.+</F-CONTENT>$
failregex = ^bad <what> from <HOST>$
            <extra-<mode>>
extra-normal =
extra-aggressive = ^worse from <HOST>$
                   ^worst from <HOST>$
what = %(thing)s
thing = login
mode = normal
journalmatch = _SYSTEMD_UNIT=food.service + _COMM=food
maxlines = 3
datepattern = ^%%Y-%%m-%%d
";

    fn write_filter() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("filter.d")).unwrap();
        std::fs::write(
            dir.path().join("filter.d/base.conf"),
            "[DEFAULT]\n__prefix = <_daemon>\\[\\d+\\]: \n",
        )
        .unwrap();
        std::fs::write(dir.path().join("filter.d/food.conf"), FILTER).unwrap();
        dir
    }

    #[test]
    fn resolves_interpolation_tags_and_modes() {
        let dir = write_filter();
        let normal =
            load_by_reference(dir.path(), &FilterReference::parse("food").unwrap()).unwrap();
        assert_eq!(normal.spec.failregex, vec!["^bad login from <HOST>$"]);
        assert_eq!(
            normal.spec.prefregex.as_deref(),
            Some(r"^food\[\d+\]:<F-CONTENT>.+</F-CONTENT>$")
        );
        assert_eq!(
            normal.journalmatch,
            vec!["_SYSTEMD_UNIT=food.service", "+", "_COMM=food"]
        );
        assert_eq!(normal.maxlines, 3);
        assert!(normal.notes.is_empty(), "{:?}", normal.notes);
        assert_eq!(normal.datepattern.as_deref(), Some("^%Y-%m-%d"));
        assert!(normal.date_pattern.is_some());
        let aggressive = load_by_reference(
            dir.path(),
            &FilterReference::parse("food[mode=aggressive, thing=auth]").unwrap(),
        )
        .unwrap();
        assert_eq!(
            aggressive.spec.failregex,
            vec![
                "^bad auth from <HOST>$",
                "^worse from <HOST>$",
                "^worst from <HOST>$"
            ]
        );
        let def = aggressive.to_definition("food").unwrap();
        assert_eq!(def.format, LineFormat::AfterDate);
        assert_eq!(def.filter.failregex_count(), 3);
        assert!(matches!(
            load_by_reference(dir.path(), &FilterReference::parse("nope").unwrap()),
            Err(Fail2banFilterError::NotFound { .. })
        ));
    }
}
