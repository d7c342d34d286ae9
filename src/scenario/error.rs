//! The error of an invalid scenario file, and byte offset to line:column.

use std::fmt;
use std::ops::Range;

/// Why a scenario file is not valid: where (file, line, column, field) and what.
///
/// Displays as one line, `FILE:LINE:COL: field `PATH`: MESSAGE`, leaving out
/// the parts that are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file, as given to [`Scenario::from_str`](super::Scenario::from_str).
    pub file: String,
    /// 1-based line of the offending text, when there is one.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text, when known.
    pub column: Option<usize>,
    /// Path of the offending field, like `step[3].server` or `replication.gc_interval`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{}`", one_line(field))?;
        }
        write!(f, ": {}", one_line(&self.message))
    }
}

/// Escapes control characters (a newline inside a quoted name, say) so that
/// an error always shows as one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The text being read and its name: turns byte spans into positioned errors.
pub(crate) struct Source<'t> {
    pub text: &'t str,
    pub origin: &'t str,
}

impl Source<'_> {
    /// An error with no position (a missing top-level field, an unreadable file).
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.origin.to_string(),
            line: None,
            column: None,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    /// An error at the start of `span`.
    pub fn error_at(
        &self,
        span: Range<usize>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = line_col(self.text, span.start);
        ScenarioError {
            line: Some(line),
            column: Some(column),
            ..self.error(field, message)
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
/// Offsets past the end or inside a character are clamped, never panic.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
