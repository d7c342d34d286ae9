//! Reading one TOML table field by field, with the position of every value.
//!
//! The file is parsed into `toml::de::DeTable` (every key and value spanned)
//! rather than straight into serde structs: that way each error can name the
//! field path and the line of the offending value, and a field that is valid
//! for one `do` but not another gets a message saying so.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ScenarioError, Source};
use crate::config::parse_duration;
use crate::limits::{MAX_PACKET, check_count, check_duration};

/// A parsed TOML value with its byte span.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A value that does not convert: what is wrong, and where inside the value.
pub(crate) struct Bad {
    /// Where, when narrower than the whole value (an element of a list).
    span: Option<Range<usize>>,
    /// Path below the field, like `[2]` or `.mail`.
    sub: String,
    message: String,
}

impl Bad {
    /// The whole value is wrong.
    pub fn new(message: impl Into<String>) -> Bad {
        Bad {
            span: None,
            sub: String::new(),
            message: message.into(),
        }
    }

    /// Moves the error down to a part of the value (element `sub` at `span`).
    fn inside(mut self, sub: &str, span: Range<usize>) -> Bad {
        self.sub = format!("{sub}{}", self.sub);
        self.span.get_or_insert(span);
        self
    }
}

/// "expected X, found integer".
fn expected(what: &str, v: &DeValue<'_>) -> Bad {
    Bad::new(format!("expected {what}, found {}", v.type_str()))
}

/// Any string.
pub(crate) fn string(v: &Value<'_>) -> Result<String, Bad> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        other => Err(expected("a string", other)),
    }
}

/// A non-blank string: a server, site, backup name or a dn.
pub(crate) fn name(v: &Value<'_>) -> Result<String, Bad> {
    let s = string(v)?;
    if s.trim().is_empty() {
        return Err(Bad::new("must not be empty"));
    }
    Ok(s)
}

/// A name that must parse as `T` (profile, granularity, strategy).
pub(crate) fn parsed<T: FromStr<Err: Display>>(v: &Value<'_>) -> Result<T, Bad> {
    string(v)?
        .parse()
        .map_err(|e: T::Err| Bad::new(e.to_string()))
}

/// A duration string such as "90s" (see `config::parse_duration`), at most
/// [`MAX_DURATION`](crate::limits::MAX_DURATION).
pub(crate) fn duration(v: &Value<'_>) -> Result<Duration, Bad> {
    let d = match v.get_ref() {
        DeValue::String(s) => parse_duration(s).map_err(|e| Bad::new(e.to_string()))?,
        other => {
            return Err(Bad::new(format!(
                "expected a duration string like \"90s\" or \"3d\", found {}",
                other.type_str()
            )));
        }
    };
    check_duration(d, false).map_err(Bad::new)?;
    Ok(d)
}

/// A duration that must be more than zero (a period or a timeout: zero
/// would loop forever), at most [`MAX_DURATION`](crate::limits::MAX_DURATION).
pub(crate) fn period(v: &Value<'_>) -> Result<Duration, Bad> {
    let d = duration(v)?;
    check_duration(d, true).map_err(Bad::new)?;
    Ok(d)
}

/// A non-negative integer.
pub(crate) fn count(v: &Value<'_>) -> Result<u64, Bad> {
    let DeValue::Integer(i) = v.get_ref() else {
        return Err(expected("a non-negative integer", v.get_ref()));
    };
    // The parser keeps integers as text: range checks are ours.
    match i128::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if n < 0 => Err(Bad::new(format!("must not be negative (got {n})"))),
        Ok(n) => u64::try_from(n).map_err(|_| Bad::new(format!("integer {n} is too large"))),
        Err(_) => Err(Bad::new(format!("integer {i} is too large"))),
    }
}

/// A non-negative integer of at most `max`.
pub(crate) fn count_at_most(max: u64) -> impl Fn(&Value<'_>) -> Result<u64, Bad> {
    move |v| {
        let n = count(v)?;
        check_count(n, max).map_err(Bad::new)?;
        Ok(n)
    }
}

/// A packet size: from 1 to [`MAX_PACKET`](crate::limits::MAX_PACKET).
pub(crate) fn packet(v: &Value<'_>) -> Result<usize, Bad> {
    match count_at_most(MAX_PACKET)(v)? {
        0 => Err(Bad::new("must be at least 1 (got 0)")),
        n => usize::try_from(n).map_err(|_| Bad::new(format!("integer {n} is too large"))),
    }
}

/// `true` or `false`.
pub(crate) fn boolean(v: &Value<'_>) -> Result<bool, Bad> {
    match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        other => Err(expected("true or false", other)),
    }
}

/// A probability: a number from 0 to 1 (an integer 0 or 1 is accepted too).
pub(crate) fn fraction(v: &Value<'_>) -> Result<f64, Bad> {
    let x: f64 = match v.get_ref() {
        DeValue::Float(f) => f.as_str().parse().unwrap_or(f64::NAN),
        DeValue::Integer(_) => count(v).map(|n| n as f64).unwrap_or(-1.0),
        other => return Err(expected("a number from 0 to 1", other)),
    };
    if !(0.0..=1.0).contains(&x) {
        let text = match v.get_ref() {
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Integer(i) => i.to_string(),
            _ => unreachable!("only numbers get here"),
        };
        return Err(Bad::new(format!("must be from 0 to 1 (got {text})")));
    }
    Ok(x)
}

/// An array, each element converted by `elem`, each kept with its span.
pub(crate) fn list<T>(
    v: &Value<'_>,
    elem: impl Fn(&Value<'_>) -> Result<T, Bad>,
) -> Result<Vec<Spanned<T>>, Bad> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(expected("a list", v.get_ref()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match elem(item) {
            Ok(x) => Ok(Spanned::new(item.span(), x)),
            Err(bad) => Err(bad.inside(&format!("[{i}]"), item.span())),
        })
        .collect()
}

/// A table of attribute name to string value, like `{ mail = "a@b" }`.
pub(crate) fn attrs(v: &Value<'_>) -> Result<BTreeMap<String, String>, Bad> {
    let DeValue::Table(t) = v.get_ref() else {
        return Err(expected(
            "a table of strings like { mail = \"a@b\" }",
            v.get_ref(),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, val) in t.iter() {
        let key = k.get_ref().to_string();
        if key.trim().is_empty() {
            return Err(Bad::new("attribute names must not be empty").inside("", k.span()));
        }
        let DeValue::String(s) = val.get_ref() else {
            let found = val.get_ref().type_str();
            let msg = format!("attribute values must be strings, found {found}");
            return Err(Bad::new(msg).inside(&format!(".{key}"), val.span()));
        };
        out.insert(key, s.to_string());
    }
    Ok(out)
}

/// One table being read: its path for messages, its header for missing fields.
pub(crate) struct Fields<'a, 'i> {
    pub src: &'a Source<'a>,
    /// `step[3]`, `replication`; empty for the top level.
    pub path: String,
    /// Span of the table header (`[[step]]`); `None` for the top level.
    pub header: Option<Range<usize>>,
    /// Key, key span, value; in file order so the first unknown key is reported.
    entries: Vec<(&'a str, Range<usize>, &'a Value<'i>)>,
}

impl<'a, 'i> Fields<'a, 'i> {
    /// Reads `table`, found at `header`, known in messages as `path`.
    pub fn new(
        src: &'a Source<'a>,
        path: impl Into<String>,
        header: Option<Range<usize>>,
        table: &'a DeTable<'i>,
    ) -> Self {
        let mut entries: Vec<_> = table
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
            .collect();
        entries.sort_by_key(|e| e.1.start);
        Fields {
            src,
            path: path.into(),
            header,
            entries,
        }
    }

    /// 1-based line of the table header (1 for the top level).
    pub fn line(&self) -> usize {
        self.src
            .line_of(self.header.as_ref().map_or(0, |h| h.start))
    }

    /// `step[3].server` for key `server`.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error at `span` about field `key`.
    pub fn error(&self, span: Range<usize>, key: &str, msg: impl Into<String>) -> ScenarioError {
        self.src.error_at(span, Some(&self.path_of(key)), msg)
    }

    /// An error about the table as a whole (at its header, if it has one).
    pub fn table_error(&self, msg: impl Into<String>) -> ScenarioError {
        let field = (!self.path.is_empty()).then_some(self.path.as_str());
        match &self.header {
            Some(h) => self.src.error_at(h.clone(), field, msg),
            None => self.src.error(field, msg),
        }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.2)
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Fails on the first key (in file order) not in `allowed`; `why` words the message.
    pub fn only(
        &self,
        allowed: &[&str],
        why: impl Fn(&str) -> String,
    ) -> Result<(), ScenarioError> {
        match self.entries.iter().find(|e| !allowed.contains(&e.0)) {
            Some((key, span, _)) => Err(self.error(span.clone(), key, why(key))),
            None => Ok(()),
        }
    }

    /// `key` converted by `conv`, or `None` when absent.
    pub fn opt<T>(
        &self,
        key: &str,
        conv: impl Fn(&Value<'i>) -> Result<T, Bad>,
    ) -> Result<Option<Spanned<T>>, ScenarioError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match conv(v) {
            Ok(x) => Ok(Some(Spanned::new(v.span(), x))),
            Err(bad) => Err(self.src.error_at(
                bad.span.unwrap_or(v.span()),
                Some(&format!("{}{}", self.path_of(key), bad.sub)),
                bad.message,
            )),
        }
    }

    /// `key` converted by `conv`; absent is an error.
    pub fn req<T>(
        &self,
        key: &str,
        conv: impl Fn(&Value<'i>) -> Result<T, Bad>,
    ) -> Result<Spanned<T>, ScenarioError> {
        self.opt(key, conv)?.ok_or_else(|| {
            let mut e = self.table_error(format!("missing required field `{key}`"));
            e.field = Some(self.path_of(key));
            e
        })
    }
}
