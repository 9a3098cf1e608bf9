//! Command-line argument helpers with uniform error reporting.
//!
//! Guests receive their task parameters as argv. A missing or malformed argument is a usage
//! error: it is reported on stderr as `error: argument <index> (<name>): <problem>` and the
//! program exits with code [`USAGE_EXIT_CODE`].

use std::ffi::OsString;
use std::fmt::Display;
use std::str::FromStr;

/// Exit code used for usage errors (bad or missing arguments, unknown modes).
pub const USAGE_EXIT_CODE: i32 = 2;

/// Parses argument `index` (0 is the program name, 1 the first real argument) as `T`.
///
/// On a missing or invalid argument prints `error: argument <index> (<name>): ...` to stderr
/// and exits with code 2.
#[must_use]
pub fn arg<T>(index: usize, name: &str) -> T
where
    T: FromStr,
    T::Err: Display,
{
    parse(std::env::args_os().nth(index), index, name)
        .unwrap_or_else(|message| usage_error(&message))
}

/// Argument `index` as a string, or `None` if there are not that many arguments.
///
/// Exits like [`arg`] if the argument is not valid UTF-8.
#[must_use]
pub fn optional(index: usize, name: &str) -> Option<String> {
    let raw = std::env::args_os().nth(index)?;
    Some(parse(Some(raw), index, name).unwrap_or_else(|message| usage_error(&message)))
}

/// Number of arguments after the program name.
#[must_use]
pub fn count() -> usize {
    std::env::args_os().len().saturating_sub(1)
}

/// Prints `error: <message>` to stderr and exits with code 2.
pub fn usage_error(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(USAGE_EXIT_CODE)
}

/// Prints `error: <message>` to stderr and exits with code 1 (a runtime failure rather than a
/// usage error).
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// The pure part of [`arg`]: parses `value` or describes why it cannot be used, as
/// `argument <index> (<name>): <problem>`.
///
/// # Errors
///
/// If `value` is `None`, not UTF-8, or rejected by `T::from_str`.
pub fn parse<T>(value: Option<OsString>, index: usize, name: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    let prefix = format!("argument {index} ({name})");
    let value = value.ok_or_else(|| format!("{prefix}: missing"))?;
    let text = value
        .into_string()
        .map_err(|raw| format!("{prefix}: {} is not valid UTF-8", raw.to_string_lossy()))?;
    text.parse()
        .map_err(|e| format!("{prefix}: invalid value {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_values() {
        assert_eq!(parse::<u64>(Some("42".into()), 1, "seed"), Ok(42));
        assert_eq!(
            parse::<String>(Some("hi".into()), 3, "text"),
            Ok("hi".to_owned())
        );
        assert_eq!(parse::<f64>(Some("-1.5".into()), 2, "x"), Ok(-1.5));
    }

    #[test]
    fn reports_missing_and_invalid_values() {
        assert_eq!(
            parse::<u64>(None, 2, "samples"),
            Err("argument 2 (samples): missing".to_owned())
        );
        let err = parse::<u64>(Some("12x".into()), 1, "seed").expect_err("not a number");
        assert!(
            err.starts_with("argument 1 (seed): invalid value \"12x\": "),
            "{err}"
        );
        let err = parse::<u32>(Some("-1".into()), 4, "width").expect_err("negative");
        assert!(
            err.starts_with("argument 4 (width): invalid value \"-1\""),
            "{err}"
        );
    }
}
