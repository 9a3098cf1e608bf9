//! Diagnostics for the TOML files naac reads (job files and `policy.toml`): one error type
//! with file, line, field, message and hint, the line finder and "did you mean".

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Which kind of file an error is about; names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A job file (`job.toml`).
    Job,
    /// The owner's `policy.toml`.
    Policy,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Job => "job file",
            FileKind::Policy => "policy file",
        })
    }
}

/// A file that could not be used, with where and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub kind: FileKind,
    pub file: PathBuf,
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// The offending field, e.g. `limits.memory`, `args[1]` or `windows[2].from`.
    pub field: Option<String>,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// The 1-based line of byte `offset` in `src` (offsets past the end count as the end).
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Suggests the candidate closest to `word`, if any is close enough.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean "x"?` for an unknown `key`, when one of `known` is close.
pub(crate) fn suggest(key: &str, known: &[&str]) -> Option<String> {
    did_you_mean(key, known.iter().copied()).map(|k| format!("did you mean \"{k}\"?"))
}

/// The hint for an unknown `key`: a close key, else `{label}: ` and every known key.
pub(crate) fn unknown_key_hint(key: &str, known: &[&str], label: &str) -> String {
    suggest(key, known).unwrap_or_else(|| format!("{label}: {}", known.join(", ")))
}

/// A field name as errors take it: `"limits.fuel"`, a `String`, or `None` for none.
pub(crate) trait Field {
    fn into_field(self) -> Option<String>;
}

impl Field for &str {
    fn into_field(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Field for String {
    fn into_field(self) -> Option<String> {
        Some(self)
    }
}

impl Field for Option<String> {
    fn into_field(self) -> Option<String> {
        self
    }
}

/// The text of one file being read, to make errors that point into it.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub kind: FileKind,
    pub file: &'a Path,
    pub src: &'a str,
}

impl Source<'_> {
    /// An error at `span` (its line is found in the text) about `field`.
    pub fn err(
        &self,
        span: Option<Range<usize>>,
        field: impl Field,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> FileError {
        FileError {
            kind: self.kind,
            file: self.file.to_path_buf(),
            line: span.map(|s| line_of(self.src, s.start)),
            field: field.into_field(),
            message: message.into(),
            hint,
        }
    }

    /// The dotted key whose value sits at `span`, read off the text: the key before `=` on
    /// its line, under the last table header above it (`limits.fuel`, `stage[1].module`).
    /// `None` where the line holds no `key =` (a value inside a multi-line array).
    pub fn key_at(&self, span: Option<Range<usize>>) -> Option<String> {
        let at = span?.start.min(self.src.len());
        let start = self.src[..at].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.src[start..at];
        let key = before.split_once('=')?.0.trim();
        let plain = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if !plain(key) {
            return None;
        }
        // The table it is in: the last header above, and which of its kind for an array of
        // tables (`[[stage]]`).
        let mut table: Option<String> = None;
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for line in self.src[..start].lines() {
            let t = line.trim();
            if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim();
                let n = counts.entry(name).or_default();
                table = Some(format!("{name}[{n}]"));
                *n += 1;
            } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = Some(name.trim().to_string());
            }
        }
        Some(match table {
            Some(t) if plain(&t.replace(['[', ']'], "")) => format!("{t}.{key}"),
            Some(_) => return None,
            None => key.to_string(),
        })
    }

    /// `unknown key "x"` at `span`, hinting at a close key of `known` or listing them all
    /// after `label`.
    pub fn unknown_key(
        &self,
        span: Option<Range<usize>>,
        field: impl Field,
        key: &str,
        known: &[&str],
        label: &str,
    ) -> FileError {
        self.err(
            span,
            field,
            format!("unknown key \"{key}\""),
            Some(unknown_key_hint(key, known, label)),
        )
    }
}

/// An error about the file as a whole (no line, no field), e.g. that it cannot be read.
pub(crate) fn file_error(
    kind: FileKind,
    file: &Path,
    message: String,
    hint: Option<String>,
) -> FileError {
    FileError {
        kind,
        file: file.to_path_buf(),
        line: None,
        field: None,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        let src = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(src, 0), 1);
        assert_eq!(line_of(src, 5), 1, "the newline itself is on its line");
        assert_eq!(line_of(src, 6), 2);
        assert_eq!(line_of(src, 12), 3);
        assert_eq!(line_of(src, 13), 4);
        assert_eq!(line_of(src, 1000), 4, "past the end: the last line");
        assert_eq!(line_of("", 3), 1);
    }

    #[test]
    fn did_you_mean_picks_the_closest_close_candidate() {
        let keys = ["fuel", "memory", "timeout"];
        assert_eq!(did_you_mean("memroy", keys.into_iter()), Some("memory"));
        assert_eq!(did_you_mean("fule", keys.into_iter()), Some("fuel"));
        assert_eq!(did_you_mean("timeot", keys.into_iter()), Some("timeout"));
        assert_eq!(did_you_mean("banana", keys.into_iter()), None);
        // Short words: a distance as long as the word is no suggestion.
        assert_eq!(did_you_mean("x", ["to"].into_iter()), None);
        assert_eq!(
            did_you_mean("fro", ["from", "to", "step"].into_iter()),
            Some("from")
        );
        assert_eq!(did_you_mean("anything", std::iter::empty()), None);
    }

    #[test]
    fn unknown_keys_suggest_or_list() {
        let known = ["days", "from", "to"];
        assert_eq!(
            unknown_key_hint("dyas", &known, "keys"),
            "did you mean \"days\"?"
        );
        assert_eq!(
            unknown_key_hint("colour", &known, "a window's keys are"),
            "a window's keys are: days, from, to"
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_key_of_a_value_is_read_off_the_text() {
        let src = "name = \"x\"\nretries = \"three\"\n[limits]\nfuel = -1\n[[stage]]\nmodule = 1\n[[stage]]\nmodule = 2\nargs = [\n  3,\n]\n";
        let cx = Source {
            kind: FileKind::Job,
            file: Path::new("job.toml"),
            src,
        };
        // The key of value `v` on the line that starts `line`.
        let at = |line: &str, v: &str| {
            let i = src.find(line).unwrap() + line.rfind(v).unwrap();
            cx.key_at(Some(i..i + v.len()))
        };
        assert_eq!(
            at("retries = \"three\"", "\"three\"").as_deref(),
            Some("retries")
        );
        assert_eq!(at("fuel = -1", "-1").as_deref(), Some("limits.fuel"));
        assert_eq!(at("module = 1", "1").as_deref(), Some("stage[0].module"));
        assert_eq!(at("module = 2", "2").as_deref(), Some("stage[1].module"));
        assert_eq!(at("  3,", "3"), None);
        assert_eq!(cx.key_at(None), None);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let src = "a = 1\nbad = 2\n";
        let cx = Source {
            kind: FileKind::Policy,
            file: Path::new("/p/policy.toml"),
            src,
        };
        let e = cx.unknown_key(Some(6..9), None, "bad", &["max_slots"], "known keys");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.hint.as_deref(), Some("known keys: max_slots"));
        assert_eq!(
            e.to_string(),
            "policy file /p/policy.toml: line 2: unknown key \"bad\""
        );
        let e = Source {
            kind: FileKind::Job,
            ..cx
        }
        .err(None, "limits.fuel", "is zero", None);
        assert_eq!(
            e.to_string(),
            "job file /p/policy.toml: limits.fuel: is zero"
        );
        let e = file_error(
            FileKind::Job,
            Path::new("j.toml"),
            "cannot read".into(),
            None,
        );
        assert_eq!(e.to_string(), "job file j.toml: cannot read");
    }
}
