//! The sweep: the values each key takes ([`SweepAxis`], [`SweepValue`]) and the
//! `{key}` templates ([`Template`]) that args, inputs and stdin are filled from.

use crate::diag::did_you_mean;
use std::fmt;

/// One value a sweep key takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepValue {
    Int(i64),
    Str(String),
}

impl fmt::Display for SweepValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepValue::Int(i) => write!(f, "{i}"),
            SweepValue::Str(s) => f.write_str(s),
        }
    }
}

/// The values of one sweep key: an integer range or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepAxis {
    Range { from: i64, to: i64, step: i64 },
    List(Vec<SweepValue>),
}

impl SweepAxis {
    pub fn len(&self) -> u64 {
        match self {
            SweepAxis::Range { from, to, step } => {
                if to <= from {
                    0
                } else {
                    ((*to as i128 - *from as i128 + *step as i128 - 1) / *step as i128) as u64
                }
            }
            SweepAxis::List(v) => v.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn get(&self, i: u64) -> SweepValue {
        match self {
            SweepAxis::Range { from, step, .. } => SweepValue::Int(from + step * i as i64),
            SweepAxis::List(v) => v[i as usize].clone(),
        }
    }
}

/// A string with `{key}` placeholders filled from the sweep (`{{` and `}}` escape braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// Index of the sweep key.
    Key(usize),
}

impl Template {
    pub(super) fn parse(s: &str, keys: &[String]) -> Result<Self, (String, Option<String>)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err((
                                    format!("unclosed \"{{\" in \"{s}\""),
                                    Some("write {{ for a literal brace".into()),
                                ));
                            }
                        }
                    }
                    let Some(i) = keys.iter().position(|k| *k == name) else {
                        let hint = match did_you_mean(&name, keys.iter().map(|k| k.as_str())) {
                            Some(k) => format!("did you mean {{{k}}}?"),
                            None if keys.is_empty() => {
                                "the job has no [sweep]; add one or remove the placeholder".into()
                            }
                            None => format!(
                                "sweep keys are: {}",
                                keys.iter()
                                    .map(|k| format!("{{{k}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        return Err((format!("unknown sweep key {{{name}}}"), Some(hint)));
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Key(i));
                }
                '}' => {
                    return Err((
                        format!("unmatched \"}}\" in \"{s}\""),
                        Some("write }} for a literal brace".into()),
                    ));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts })
    }

    pub(super) fn render(&self, values: &[SweepValue]) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Key(i) => s.push_str(&values[*i].to_string()),
            }
        }
        s
    }
}
