//! The Assess step: a profile of each column of an ingest, built while streaming in bounded
//! memory.
//!
//! Per column: inferred type, count of rows, missing values, distinct values (exact up to
//! [`DISTINCT_EXACT_MAX`], then a k-minimum-values estimate, and the profile says which), the
//! smallest and largest value (by type: numbers, dates, text in byte order), and the five most
//! frequent values (exact while the column has at most [`FREQ_EXACT_MAX`] distinct values of at
//! most [`FREQ_VALUE_MAX_LEN`] bytes, then a space-saving summary whose counts may be high by at
//! most the smallest tracked count, and the profile says which).
//!
//! Profiles of patient columns hold patient data (top values, min, max). They are stored in the
//! vault with the ingest and printed on request; they never go to a log.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::infer::ColumnType;
use crate::model::Value;

/// Distinct values counted exactly up to this many per column.
pub const DISTINCT_EXACT_MAX: usize = 4096;
/// Hashes kept for the k-minimum-values distinct estimate.
pub const KMV_K: usize = 1024;
/// Values counted exactly for the top-5 up to this many distinct values per column.
pub const FREQ_EXACT_MAX: usize = 512;
/// Counters of the space-saving summary once exact counting stops.
pub const FREQ_SUMMARY: usize = 64;
/// Values longer than this are counted in `distinct` but not ranked among the top values.
pub const FREQ_VALUE_MAX_LEN: usize = 128;
/// How many top values a profile lists.
pub const TOP_N: usize = 5;

/// Distinct values: exact, or an estimate once past [`DISTINCT_EXACT_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distinct {
    Exact(u64),
    Estimate(u64),
}

impl fmt::Display for Distinct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distinct::Exact(n) => write!(f, "{n}"),
            Distinct::Estimate(n) => write!(f, "~{n} (est.)"),
        }
    }
}

/// A value and how often it occurs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

/// The profile of one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub column: String,
    pub column_type: ColumnType,
    /// Rows ingested (bad rows are not profiled).
    pub count: u64,
    /// Of which empty.
    pub missing: u64,
    pub distinct: Distinct,
    pub min: Option<Value>,
    pub max: Option<Value>,
    /// Most frequent first; ties in value order.
    pub top: Vec<ValueCount>,
    /// False once counts come from the space-saving summary (upper bounds).
    pub top_exact: bool,
}

/// The profiles of all columns of one ingest, in table order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestProfile {
    pub source: String,
    pub ingest_id: u64,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

impl IngestProfile {
    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, crate::VaultError> {
        serde_json::to_string_pretty(self).map_err(|e| crate::VaultError::Json(e.to_string()))
    }
}

/// A value cut for the table display (whole values stay in the JSON).
fn cell(s: &str) -> String {
    const MAX: usize = 24;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX - 1).collect();
        out.push('…');
        out
    }
}

impl fmt::Display for IngestProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "source {}, ingest {}, {} rows",
            self.source, self.ingest_id, self.rows
        )?;
        let headers = [
            "column", "type", "count", "missing", "distinct", "min", "max", "top 5",
        ];
        let rows: Vec<[String; 8]> = self
            .columns
            .iter()
            .map(|c| {
                let top = c
                    .top
                    .iter()
                    .map(|v| {
                        format!(
                            "{} ({}{})",
                            cell(&v.value),
                            if c.top_exact { "" } else { "<=" },
                            v.count
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                [
                    c.column.clone(),
                    c.column_type.to_string(),
                    c.count.to_string(),
                    c.missing.to_string(),
                    c.distinct.to_string(),
                    c.min
                        .as_ref()
                        .map(|v| cell(&v.to_string()))
                        .unwrap_or_default(),
                    c.max
                        .as_ref()
                        .map(|v| cell(&v.to_string()))
                        .unwrap_or_default(),
                    top,
                ]
            })
            .collect();
        let mut widths = headers.map(|h| h.chars().count());
        for r in &rows {
            for (w, v) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(v.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let last = cells.len() - 1;
            for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
                if i == last {
                    writeln!(f, "{c}")?;
                } else {
                    write!(f, "{c:<w$} | ")?;
                }
            }
            Ok(())
        };
        line(f, &headers.map(String::from))?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(f, &rule)?;
        for r in &rows {
            line(f, r)?;
        }
        Ok(())
    }
}

enum Freq {
    Exact(HashMap<String, u64>),
    Summary(HashMap<String, u64>),
}

/// Builds one column's profile from a stream of values.
pub(crate) struct ColumnProfiler {
    column: String,
    column_type: ColumnType,
    count: u64,
    missing: u64,
    exact: Option<HashSet<u64>>,
    kmv: BTreeSet<u64>,
    freq: Freq,
    min: Option<Value>,
    max: Option<Value>,
}

fn hash64(s: &str) -> u64 {
    // SipHash with fixed keys: stable across runs, spread well enough for an estimate.
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl ColumnProfiler {
    pub fn new(column: String, column_type: ColumnType) -> Self {
        ColumnProfiler {
            column,
            column_type,
            count: 0,
            missing: 0,
            exact: Some(HashSet::new()),
            kmv: BTreeSet::new(),
            freq: Freq::Exact(HashMap::new()),
            min: None,
            max: None,
        }
    }

    /// Takes one value of an ingested row.
    pub fn observe(&mut self, value: &Value) {
        self.count += 1;
        if value.is_null() {
            self.missing += 1;
            return;
        }
        let text = value.to_string();
        let h = hash64(&text);
        if let Some(set) = &mut self.exact {
            set.insert(h);
            if set.len() > DISTINCT_EXACT_MAX {
                self.exact = None;
            }
        }
        if self.kmv.len() < KMV_K {
            self.kmv.insert(h);
        } else if let Some(&largest) = self.kmv.last()
            && h < largest
            && self.kmv.insert(h)
        {
            self.kmv.pop_last();
        }
        if text.len() <= FREQ_VALUE_MAX_LEN {
            self.count_value(text);
        }
        if self
            .min
            .as_ref()
            .is_none_or(|m| value.compare(m) == Some(std::cmp::Ordering::Less))
        {
            self.min = Some(value.clone());
        }
        if self
            .max
            .as_ref()
            .is_none_or(|m| value.compare(m) == Some(std::cmp::Ordering::Greater))
        {
            self.max = Some(value.clone());
        }
    }

    fn count_value(&mut self, text: String) {
        match &mut self.freq {
            Freq::Exact(map) => {
                *map.entry(text).or_default() += 1;
                if map.len() > FREQ_EXACT_MAX {
                    let mut all: Vec<(String, u64)> = std::mem::take(map).into_iter().collect();
                    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    all.truncate(FREQ_SUMMARY);
                    self.freq = Freq::Summary(all.into_iter().collect());
                }
            }
            Freq::Summary(map) => {
                if let Some(c) = map.get_mut(&text) {
                    *c += 1;
                } else if map.len() < FREQ_SUMMARY {
                    map.insert(text, 1);
                } else {
                    // Space-saving: the new value takes the place of the least counted one and
                    // inherits its count (an upper bound on the new value's count).
                    let smallest = map
                        .iter()
                        .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                        .map(|(k, c)| (k.clone(), *c));
                    if let Some((k, c)) = smallest {
                        map.remove(&k);
                        map.insert(text, c + 1);
                    }
                }
            }
        }
    }

    fn distinct(&self) -> Distinct {
        if let Some(set) = &self.exact {
            return Distinct::Exact(set.len() as u64);
        }
        // k-minimum values: with the k smallest of n uniform 64-bit hashes, the k-th smallest
        // is about k/n of the range, so n is about (k-1) / (h_k / 2^64).
        let Some(&kth) = self.kmv.last() else {
            return Distinct::Estimate(0);
        };
        let fraction = (kth as f64 + 1.0) / 18_446_744_073_709_551_616.0;
        let estimate = ((self.kmv.len() as f64 - 1.0) / fraction).round();
        Distinct::Estimate(estimate as u64)
    }

    pub fn finish(self) -> ColumnProfile {
        let distinct = self.distinct();
        let (map, top_exact) = match self.freq {
            Freq::Exact(m) => (m, true),
            Freq::Summary(m) => (m, false),
        };
        let mut top: Vec<ValueCount> = map
            .into_iter()
            .map(|(value, count)| ValueCount { value, count })
            .collect();
        top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        top.truncate(TOP_N);
        ColumnProfile {
            column: self.column,
            column_type: self.column_type,
            count: self.count,
            missing: self.missing,
            distinct,
            min: self.min,
            max: self.max,
            top,
            top_exact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Date;

    #[test]
    fn small_column_is_exact() {
        let mut p = ColumnProfiler::new("sex".into(), ColumnType::Integer);
        for v in [1, 2, 2, 1, 2] {
            p.observe(&Value::Int(v));
        }
        p.observe(&Value::Null);
        let c = p.finish();
        assert_eq!(c.count, 6);
        assert_eq!(c.missing, 1);
        assert_eq!(c.distinct, Distinct::Exact(2));
        assert_eq!(c.min, Some(Value::Int(1)));
        assert_eq!(c.max, Some(Value::Int(2)));
        assert!(c.top_exact);
        assert_eq!(
            c.top,
            vec![
                ValueCount {
                    value: "2".into(),
                    count: 3
                },
                ValueCount {
                    value: "1".into(),
                    count: 2
                }
            ]
        );
    }

    #[test]
    fn dates_order_by_date() {
        let mut p = ColumnProfiler::new("d".into(), ColumnType::Date);
        for s in ["2023-05-01", "2021-12-31", "2024-01-01"] {
            p.observe(&Value::Date(Date::parse(s).unwrap()));
        }
        let c = p.finish();
        assert_eq!(c.min.unwrap().to_string(), "2021-12-31");
        assert_eq!(c.max.unwrap().to_string(), "2024-01-01");
    }

    #[test]
    fn large_column_estimates_and_says_so() {
        let mut p = ColumnProfiler::new("n".into(), ColumnType::Integer);
        let n = 50_000i64;
        for i in 0..n {
            p.observe(&Value::Int(i));
            // A heavy hitter that must stay on top in the summary.
            if i % 10 == 0 {
                p.observe(&Value::Int(-1));
            }
        }
        let c = p.finish();
        let Distinct::Estimate(est) = c.distinct else {
            panic!("expected an estimate");
        };
        let err = (est as f64 - n as f64).abs() / n as f64;
        assert!(err < 0.15, "estimate {est} for {n}");
        assert!(!c.top_exact);
        assert_eq!(c.top[0].value, "-1");
        assert!(c.top[0].count >= 5_000);
        assert_eq!(c.min, Some(Value::Int(-1)));
        assert_eq!(c.max, Some(Value::Int(n - 1)));
    }

    #[test]
    fn display_and_json() {
        let mut p = ColumnProfiler::new("admission_date".into(), ColumnType::Date);
        p.observe(&Value::Date(Date::new(2023, 1, 5).unwrap()));
        let prof = IngestProfile {
            source: "smr01".into(),
            ingest_id: 3,
            rows: 1,
            columns: vec![p.finish()],
        };
        let table = prof.to_string();
        assert!(table.contains("admission_date | date"), "{table}");
        assert!(table.contains("2023-01-05 (1)"), "{table}");
        let json = prof.to_json().unwrap();
        let back: IngestProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, prof);
    }
}
