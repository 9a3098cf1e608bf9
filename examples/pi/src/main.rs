//! Monte-Carlo estimate of π, split into independent naac tasks.
//!
//! * `pi SEED SAMPLES` throws `SAMPLES` random points (from a PRNG seeded with `SEED`) into the
//!   unit square and prints one line `HITS SAMPLES`, where `HITS` is how many landed inside
//!   the quarter circle.
//! * `pi reduce` reads such lines from stdin (the tasks' outputs, concatenated), sums them and
//!   prints `pi = 3.14159265 (HITS of SAMPLES samples in the quarter circle)`. A malformed
//!   line is reported on stderr with its line number and the exit code is 1.

use std::io::Read;

use naac_guest::args;
use naac_guest::kernels::pi_hits;

fn main() {
    if args::optional(1, "seed or \"reduce\"").as_deref() == Some("reduce") {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            args::fail(&format!("reading stdin: {e}"));
        }
        match reduce(&input) {
            Ok(total) => println!("{}", total.summary()),
            Err(message) => args::fail(&message),
        }
        return;
    }
    let seed: u64 = args::arg(1, "seed");
    let samples: u64 = args::arg(2, "samples");
    println!("{} {samples}", pi_hits(seed, samples));
}

/// Sum of all tasks' results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Total {
    hits: u64,
    samples: u64,
}

impl Total {
    fn estimate(self) -> f64 {
        4.0 * self.hits as f64 / self.samples as f64
    }

    fn summary(self) -> String {
        format!(
            "pi = {:.8} ({} of {} samples in the quarter circle)",
            self.estimate(),
            self.hits,
            self.samples
        )
    }
}

/// Parses and sums `HITS SAMPLES` lines; blank lines are ignored.
fn reduce(input: &str) -> Result<Total, String> {
    let mut total = Total {
        hits: 0,
        samples: 0,
    };
    for (number, line) in input.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |why: &str| format!("line {number}: {why}: {line:?}");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hits, samples] = fields[..] else {
            return Err(malformed("expected two integers `HITS SAMPLES`"));
        };
        let hits: u64 = hits
            .parse()
            .map_err(|_| malformed("HITS is not a non-negative integer"))?;
        let samples: u64 = samples
            .parse()
            .map_err(|_| malformed("SAMPLES is not a non-negative integer"))?;
        if hits > samples {
            return Err(malformed("HITS exceeds SAMPLES"));
        }
        total.hits = total
            .hits
            .checked_add(hits)
            .ok_or_else(|| malformed("total HITS overflows"))?;
        total.samples = total
            .samples
            .checked_add(samples)
            .ok_or_else(|| malformed("total SAMPLES overflows"))?;
    }
    if total.samples == 0 {
        return Err("no samples in the input".to_owned());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_lines() {
        let total = reduce("3 4\n\n  785398160 999999996  \n").expect("valid input");
        assert_eq!(
            total,
            Total {
                hits: 785_398_163,
                samples: 1_000_000_000
            }
        );
        assert_eq!(
            total.summary(),
            "pi = 3.14159265 (785398163 of 1000000000 samples in the quarter circle)"
        );
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        let err = reduce("1 2\n3\n").expect_err("one field");
        assert!(err.starts_with("line 2: "), "{err}");
        let err = reduce("1 2\n\nx 2\n").expect_err("not a number");
        assert!(err.starts_with("line 3: "), "{err}");
        let err = reduce("1 2 3\n").expect_err("three fields");
        assert!(err.starts_with("line 1: "), "{err}");
        let err = reduce("5 2\n").expect_err("too many hits");
        assert!(err.contains("exceeds"), "{err}");
        assert!(reduce("").is_err());
        assert!(reduce("0 0\n").is_err());
    }

    #[test]
    fn task_output_round_trips() {
        let line = format!("{} {}\n", pi_hits(9, 1000), 1000);
        let total = reduce(&line).expect("task output parses");
        assert_eq!(total.samples, 1000);
        assert!((total.estimate() - std::f64::consts::PI).abs() < 0.3);
    }
}
