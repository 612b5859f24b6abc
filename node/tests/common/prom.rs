//! Test helpers for the operations endpoint: a plain HTTP/1.1 client and a parser of the
//! Prometheus text exposition format (0.0.4) that checks what it reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// One request over plain HTTP; returns the status and the body as text.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// A sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metric family: type, help and samples.
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// A parsed scrape, by family name.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub families: BTreeMap<String, Family>,
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad sample value {v:?}")),
    }
}

/// Parses `{a="x",b="y\"z"}` (after the name); returns the labels and the rest of the line.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return (labels, s);
    };
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let (name, r) = rest.split_once("=\"").expect("label without =\"");
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {name:?}"
        );
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated label value");
            match c {
                '\\' => match chars.next().expect("dangling escape").1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    other => panic!("bad escape \\{other}"),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "label {name} twice"
        );
        rest = &r[end + 1..];
    }
}

/// The family a sample belongs to (histogram series carry suffixes).
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> &'a str {
    if families.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families
                .get(base)
                .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
        {
            return base;
        }
    }
    panic!("sample {name} has no # TYPE line before it")
}

/// Parses and checks a scrape: every sample follows a TYPE line of its family, names and
/// labels are well formed, histograms are cumulative and their `+Inf` bucket equals the count.
pub fn parse(text: &str) -> Scrape {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_string()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type {kind}"
            );
            let f = families.entry(name.to_string()).or_default();
            assert!(
                f.kind.is_empty() && f.samples.is_empty(),
                "TYPE of {name} repeated or after its samples"
            );
            f.kind = kind.to_string();
        } else if line.starts_with('#') {
            continue;
        } else {
            let end = line.find(['{', ' ']).expect("sample without value");
            let name = &line[..end];
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name {name:?}"
            );
            let (labels, rest) = parse_labels(&line[end..]);
            let mut parts = rest.split_whitespace();
            let value = parse_value(parts.next().expect("no value"));
            assert!(parts.count() <= 1, "junk after the value in {line:?}");
            let family = family_of(name, &families).to_string();
            let f = families.get_mut(&family).unwrap();
            assert!(!f.kind.is_empty(), "sample {name} before its TYPE");
            if f.kind == "counter" {
                assert!(value >= 0.0, "negative counter {line}");
            }
            f.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    let scrape = Scrape { families };
    scrape.check_histograms();
    scrape
}

impl Scrape {
    fn check_histograms(&self) {
        for (name, f) in &self.families {
            if f.kind != "histogram" {
                continue;
            }
            // Group series by their labels without `le`.
            let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in f.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
                let mut l = s.labels.clone();
                let le = parse_value(&l.remove("le").expect("bucket without le"));
                series.entry(l).or_default().push((le, s.value));
            }
            for (labels, buckets) in series {
                let mut last = 0.0;
                for (_, v) in &buckets {
                    assert!(*v >= last, "{name}{labels:?}: buckets are not cumulative");
                    last = *v;
                }
                assert_eq!(
                    buckets.last().map(|b| b.0),
                    Some(f64::INFINITY),
                    "{name}: no +Inf bucket"
                );
                let count = self.value(&format!("{name}_count"), &labels_vec(&labels));
                assert_eq!(Some(last), count, "{name}{labels:?}: +Inf bucket != count");
            }
        }
    }

    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.families
            .values()
            .flat_map(|f| f.samples.iter())
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The value of a sample, 0 when absent (a labelled counter not yet incremented).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

fn labels_vec(l: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn the_parser_reads_and_checks_the_format() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"x\\\"y\",z=\"\\\\\"} 3\n\
                # TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n\
                h_seconds_sum 0.3\nh_seconds_count 2\n";
    let s = parse(text);
    assert_eq!(s.get("a_total", &[("k", "x\"y"), ("z", "\\")]), 3.0);
    assert_eq!(s.get("h_seconds_count", &[]), 2.0);
    assert_eq!(s.families["a_total"].help, "A.");
    let bad = std::panic::catch_unwind(|| parse("x 1\n"));
    assert!(bad.is_err(), "a sample without TYPE is refused");
    let bad = std::panic::catch_unwind(|| {
        parse("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n")
    });
    assert!(bad.is_err(), "non-cumulative buckets are refused");
}
