//! Counts the primes below N by splitting `[0, N)` into independent naac tasks.
//!
//! * `primes START WIDTH` counts the primes in `[START, START + WIDTH)` and prints one line
//!   `START END COUNT` with `END = START + WIDTH`.
//! * `primes reduce` reads such lines from stdin (the tasks' outputs, concatenated), checks
//!   that the ranges tile `[0, N)` exactly, where N is the largest END, and prints
//!   `primes below N: COUNT`. Malformed lines, gaps and overlaps are reported on stderr and the
//!   exit code is 1.

use std::io::Read;

use naac_guest::args;
use naac_guest::kernels::count_primes;

fn main() {
    if args::optional(1, "start or \"reduce\"").as_deref() == Some("reduce") {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            args::fail(&format!("reading stdin: {e}"));
        }
        match reduce(&input) {
            Ok(total) => println!("primes below {}: {}", total.below, total.count),
            Err(message) => args::fail(&message),
        }
        return;
    }
    let start: u64 = args::arg(1, "start");
    let width: u64 = args::arg(2, "width");
    let Some(end) = start.checked_add(width) else {
        args::usage_error("START + WIDTH exceeds 2^64 - 1");
    };
    println!("{start} {end} {}", count_primes(start, end));
}

/// One task's result: the number of primes in `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
    count: u64,
    line: usize,
}

/// The combined result: `count` primes below `below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Total {
    below: u64,
    count: u64,
}

fn parse_line(number: usize, line: &str) -> Result<Range, String> {
    let malformed = |why: &str| format!("line {number}: {why}: {line:?}");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [start, end, count] = fields[..] else {
        return Err(malformed("expected three integers `START END COUNT`"));
    };
    let int = |text: &str, name: &str| {
        text.parse::<u64>()
            .map_err(|_| malformed(&format!("{name} is not a non-negative integer")))
    };
    let range = Range {
        start: int(start, "START")?,
        end: int(end, "END")?,
        count: int(count, "COUNT")?,
        line: number,
    };
    if range.end < range.start {
        return Err(malformed("END is below START"));
    }
    if range.count > range.end - range.start {
        return Err(malformed("COUNT exceeds the width of the range"));
    }
    Ok(range)
}

/// Parses `START END COUNT` lines (blank lines are ignored) and sums them, requiring the
/// ranges to cover `[0, max END)` without gaps or overlaps.
fn reduce(input: &str) -> Result<Total, String> {
    let mut ranges = input
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_line(i + 1, line))
        .collect::<Result<Vec<_>, _>>()?;
    if ranges.is_empty() {
        return Err("no results in the input".to_owned());
    }
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut covered = 0;
    let mut count: u64 = 0;
    for r in &ranges {
        if r.start > covered {
            return Err(format!(
                "no result covers [{covered}, {}) (next range starts on line {})",
                r.start, r.line
            ));
        }
        if r.start < covered {
            return Err(format!(
                "line {}: range [{}, {}) overlaps an earlier range ending at {covered}",
                r.line, r.start, r.end
            ));
        }
        covered = r.end;
        // Counts are bounded by disjoint widths below 2^64, so the sum cannot overflow.
        count += r.count;
    }
    Ok(Total {
        below: covered,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_ranges_in_any_order() {
        let total = reduce("50 100 10\n\n0 50 15\n").expect("valid input");
        assert_eq!(
            total,
            Total {
                below: 100,
                count: 25
            }
        );
    }

    #[test]
    fn task_outputs_reduce_to_pi_of_n() {
        let mut input = String::new();
        for k in (0..40).rev() {
            let (start, end) = (k * 2_500, (k + 1) * 2_500);
            input.push_str(&format!("{start} {end} {}\n", count_primes(start, end)));
        }
        let total = reduce(&input).expect("valid input");
        assert_eq!((total.below, total.count), (100_000, 9_592));
    }

    #[test]
    fn rejects_gaps_overlaps_and_garbage() {
        let err = reduce("0 10 4\n20 30 2\n").expect_err("gap");
        assert!(err.contains("[10, 20)"), "{err}");
        let err = reduce("0 10 4\n5 30 2\n").expect_err("overlap");
        assert!(err.starts_with("line 2: "), "{err}");
        let err = reduce("0 10 4\n0 10 4\n").expect_err("duplicate");
        assert!(err.contains("overlaps"), "{err}");
        let err = reduce("10 20 4\n").expect_err("does not start at 0");
        assert!(err.contains("[0, 10)"), "{err}");
        let err = reduce("0 10 4\n\n0 10\n").expect_err("two fields");
        assert!(err.starts_with("line 3: "), "{err}");
        let err = reduce("0 10 x\n").expect_err("not a number");
        assert!(err.starts_with("line 1: "), "{err}");
        let err = reduce("10 0 0\n").expect_err("reversed");
        assert!(err.contains("below START"), "{err}");
        assert!(reduce("0 10 11\n").is_err());
        assert!(reduce("\n").is_err());
    }
}
