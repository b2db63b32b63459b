//! Problems found while loading a bundle, with file, line and column, rendered for
//! terminals and serialized for CI.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    /// 1-based line, when the problem has a position.
    pub line: Option<usize>,
    /// 1-based column in characters.
    pub column: Option<usize>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The source line the position points into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    /// Length of the marked text in the snippet, in characters.
    #[serde(skip)]
    pub marked: usize,
}

impl Diagnostic {
    pub fn error(file: Option<&Path>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: file.map(Path::to_owned),
            line: None,
            column: None,
            message: message.into(),
            help: None,
            snippet: None,
            marked: 0,
        }
    }

    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Builds a diagnostic from any miette diagnostic (Cedar's parse and validation
    /// errors are ones), placed by its first label within `source`, the text of `file`.
    pub fn from_miette(
        severity: Severity,
        file: &Path,
        source: &str,
        diagnostic: &dyn miette::Diagnostic,
    ) -> Self {
        // Cedar keeps the specific cause in the chain for some errors ("unexpected token").
        let message = error_chain(diagnostic);
        let mut result = Self {
            severity,
            file: Some(file.to_owned()),
            line: None,
            column: None,
            message,
            help: diagnostic.help().map(|help| help.to_string()),
            snippet: None,
            marked: 0,
        };
        let label = diagnostic.labels().and_then(|mut labels| labels.next());
        if let Some(label) = label {
            result.place(source, label.offset(), label.len());
        }
        result
    }

    /// Sets line, column and snippet from a byte offset into `source`.
    pub fn place(&mut self, source: &str, offset: usize, len: usize) {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let before = source.get(..offset).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_text = source
            .get(line_start..)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default();
        let column_text = source.get(line_start..offset).unwrap_or_default();

        self.line = Some(before.matches('\n').count() + 1);
        self.column = Some(column_text.chars().count() + 1);
        self.snippet = Some(line_text.to_owned());
        let marked_end = floor_char_boundary(source, (offset + len).min(source.len()));
        let marked = source.get(offset..marked_end).unwrap_or_default();
        self.marked = marked
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            .max(1);
    }

    /// Renders the diagnostic like a compiler: `error: file:line:column: message`, then
    /// the source line with the position marked, then the help.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = write!(out, "{severity}: ");
        if let Some(file) = &self.file {
            let _ = write!(out, "{}", file.display());
            if let (Some(line), Some(column)) = (self.line, self.column) {
                let _ = write!(out, ":{line}:{column}");
            }
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if let (Some(snippet), Some(line), Some(column)) = (&self.snippet, self.line, self.column) {
            let gutter = line.to_string();
            let pad = " ".repeat(gutter.len());
            let _ = write!(out, "\n {pad} |\n {gutter} | {snippet}\n {pad} | ");
            out.push_str(&" ".repeat(column.saturating_sub(1)));
            out.push_str(&"^".repeat(self.marked.max(1)));
        }
        if let Some(help) = &self.help {
            let _ = write!(out, "\n  help: {help}");
        }
        out
    }
}

/// Formats an error with its chain of causes, `outer: inner: innermost`, leaving out a
/// cause whose text the message already contains.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            let _ = write!(message, ": {text}");
        }
        cause = inner.source();
    }
    message
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_counts_lines_and_characters() {
        let mut diagnostic = Diagnostic::error(Some(Path::new("p.cedar")), "bad");
        let source = "first\nsécond line\nthird";
        let offset = source.find("line").unwrap_or_default();
        diagnostic.place(source, offset, 4);
        assert_eq!(diagnostic.line, Some(2));
        assert_eq!(diagnostic.column, Some(8));
        assert_eq!(diagnostic.snippet.as_deref(), Some("sécond line"));
        assert_eq!(
            diagnostic.render(),
            "error: p.cedar:2:8: bad\n   |\n 2 | sécond line\n   |        ^^^^"
        );
    }
}
