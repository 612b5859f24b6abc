//! Column type inference, as the seed's CSV importer does it (seed 000, appendix D,
//! `validate_fields`): a value is an integer if it parses as one, else a float, else a date,
//! else text; a column takes a type when all its values agree.
//!
//! Differences from the seed, and why:
//! - Inference reads the first [`crate::Limits::infer_rows`] rows (all rows of a smaller file):
//!   the table is read once, as a stream, in bounded memory. A later value that breaks the
//!   inferred type is a bad row with its line number, not a silent change of the column's type
//!   (a typo in one date would otherwise turn a date column into text).
//! - Integers and floats mixed in the sample make a float column (the one widening); any other
//!   mix makes a text column. A column empty throughout the sample is text.
//! - An integer has no leading zero and at most 18 digits, so codes such as `007` and CHI
//!   numbers such as `0101501234` stay text instead of losing their zeros.
//! - Floats are finite decimals (`-1.5`, `2e3`); `NaN` and `inf` are text.
//! - Dates are ISO `YYYY-MM-DD` or the seed's `DD/MM/YYYY`, checked against the calendar, and
//!   stored ISO.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Date, Value};

/// The inferred type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Integer,
    Float,
    Date,
    Text,
}

impl ColumnType {
    /// "an integer", "a date", ...: for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            ColumnType::Integer => "an integer",
            ColumnType::Float => "a number",
            ColumnType::Date => "a date (YYYY-MM-DD or DD/MM/YYYY)",
            ColumnType::Text => "text",
        }
    }

    /// The most specific type of one non-empty value.
    pub fn of(value: &str) -> ColumnType {
        if parse_int(value).is_some() {
            ColumnType::Integer
        } else if parse_float(value).is_some() {
            ColumnType::Float
        } else if Date::parse(value).is_some() {
            ColumnType::Date
        } else {
            ColumnType::Text
        }
    }

    /// The type of a column holding values of types `self` and `other`.
    pub fn join(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Integer, Float) | (Float, Integer) => Float,
            _ => Text,
        }
    }

    /// Parses a trimmed, non-empty value as this type; `None` if it does not fit.
    pub fn parse(self, value: &str) -> Option<Value> {
        match self {
            ColumnType::Integer => parse_int(value).map(Value::Int),
            ColumnType::Float => parse_int(value)
                .map(|i| i as f64)
                .or_else(|| parse_float(value))
                .map(Value::Float),
            ColumnType::Date => Date::parse(value).map(Value::Date),
            ColumnType::Text => Some(Value::Text(value.to_string())),
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Date => "date",
            ColumnType::Text => "text",
        })
    }
}

/// Folds sample values into a type.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inference {
    seen: Option<ColumnType>,
}

impl Inference {
    /// Takes one trimmed value into account; empty values say nothing.
    pub fn observe(&mut self, value: &str) {
        if value.is_empty() || self.seen == Some(ColumnType::Text) {
            return;
        }
        let t = ColumnType::of(value);
        self.seen = Some(match self.seen {
            None => t,
            Some(s) => s.join(t),
        });
    }

    /// The inferred type; text for a column with no value in the sample.
    pub fn finish(self) -> ColumnType {
        self.seen.unwrap_or(ColumnType::Text)
    }
}

/// Digits with no leading zero (but `0`), an optional `-`, at most 18 digits.
fn is_int_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'))
        && !(s.starts_with('-') && digits == "0")
}

fn parse_int(s: &str) -> Option<i64> {
    if is_int_text(s) { s.parse().ok() } else { None }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` with a fraction or an exponent, finite.
fn parse_float(s: &str) -> Option<f64> {
    if s.len() > 64 {
        return None;
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_len = i - int_start;
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut decorated = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        decorated = true;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        decorated = true;
    }
    if i != b.len() || !decorated {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_types() {
        use ColumnType::*;
        for (v, t) in [
            ("0", Integer),
            ("42", Integer),
            ("-7", Integer),
            ("007", Text),
            ("0101501234", Text),
            ("1203851234", Integer),
            ("-0", Text),
            ("+5", Text),
            ("1234567890123456789", Text),
            ("1.5", Float),
            ("-0.25", Float),
            ("2e3", Float),
            ("1.", Text),
            (".5", Text),
            ("NaN", Text),
            ("inf", Text),
            ("1e999", Text),
            ("2023-01-05", Date),
            ("05/01/2023", Date),
            ("31/02/2023", Text),
            ("S82.1", Text),
            ("W19.1", Text),
        ] {
            assert_eq!(ColumnType::of(v), t, "{v}");
        }
    }

    #[test]
    fn inference_folds_like_the_seed() {
        let infer = |vals: &[&str]| {
            let mut i = Inference::default();
            for v in vals {
                i.observe(v);
            }
            i.finish()
        };
        assert_eq!(infer(&["1", "2", ""]), ColumnType::Integer);
        assert_eq!(infer(&["1", "2.5"]), ColumnType::Float);
        assert_eq!(infer(&["2023-01-01", "02/01/2023"]), ColumnType::Date);
        assert_eq!(infer(&["2023-01-01", "3"]), ColumnType::Text);
        assert_eq!(infer(&["", ""]), ColumnType::Text);
        assert_eq!(infer(&[]), ColumnType::Text);
    }

    #[test]
    fn parse_by_type() {
        assert_eq!(ColumnType::Float.parse("3"), Some(Value::Float(3.0)));
        assert_eq!(ColumnType::Integer.parse("3.5"), None);
        assert_eq!(ColumnType::Date.parse("2023-02-30"), None);
        assert_eq!(
            ColumnType::Date.parse("05/01/2023"),
            Some(Value::Date(Date::new(2023, 1, 5).unwrap()))
        );
        assert_eq!(
            ColumnType::Text.parse("x"),
            Some(Value::Text("x".to_string()))
        );
    }
}
