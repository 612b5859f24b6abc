//! Certificate expiry: this node's certificate, its TLS certificate and its peers' node
//! certificates are watched, so that no network dies of an expired certificate.
//!
//! ```text
//!  identity.json (not_after) ────────┐
//!  tls.crt (X.509 validity) ─────────┼─> CertWatch ──scrape──> sphr_cert_expiry_seconds{subject}
//!  ledger: node certificates met in  ┘        │                sphr_cert_expiring{subject}
//!   committed blocks (endorsements)           └─ at start, then hourly: a warning per
//!                                                certificate within node.cert_warn_days
//!  SIGHUP ─> RunningNode::reload_certificates: identity.json + tls.crt/tls.key read again,
//!            checked (same key as in genesis, issued by the org CA, valid now), then used
//!            for endorsements and TLS handshakes; sphr_cert_reloads_total{result}
//! ```
//!
//! Subjects are `node`, `tls` and `peer:<name@org>`: node and org names only, never a user
//! or patient. A peer's expiry is the latest `not_after` among its node certificates met in
//! blocks committed since this node started (every endorsement carries the endorser's
//! certificate), so a renewed peer certificate shows as soon as one of its endorsements is
//! committed.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sphr_ledger::Ledger;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often the warning lines are repeated while a certificate is within the window.
pub const WARN_EVERY: Duration = Duration::from_secs(3600);

/// One watched certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// `node`, `tls` or `peer:<name@org>`.
    pub subject: String,
    /// End of validity (Unix seconds, exclusive).
    pub not_after: u64,
}

/// The expiry dates the node watches.
pub struct CertWatch {
    me: String,
    warn_s: u64,
    own: RwLock<u64>,
    tls: RwLock<Option<u64>>,
    ledger: Arc<Ledger>,
}

impl CertWatch {
    /// Watches this node (`name@org`, whose certificate ends at `own_not_after`), its TLS
    /// certificate (ends at `tls_not_after`, when it could be read) and the peers seen by
    /// `ledger`; warns `warn_days` ahead.
    pub fn new(
        me: String,
        warn_days: u32,
        own_not_after: u64,
        tls_not_after: Option<u64>,
        ledger: Arc<Ledger>,
    ) -> CertWatch {
        CertWatch {
            me,
            warn_s: u64::from(warn_days) * 86_400,
            own: RwLock::new(own_not_after),
            tls: RwLock::new(tls_not_after),
            ledger,
        }
    }

    /// A renewed node certificate.
    pub fn set_own(&self, not_after: u64) {
        *self.own.write().unwrap_or_else(|e| e.into_inner()) = not_after;
    }

    /// A renewed TLS certificate.
    pub fn set_tls(&self, not_after: Option<u64>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = not_after;
    }

    /// Every watched certificate: `node`, `tls` (if readable), then the peers.
    pub fn expiries(&self) -> Vec<CertExpiry> {
        let mut out = vec![CertExpiry {
            subject: "node".into(),
            not_after: *self.own.read().unwrap_or_else(|e| e.into_inner()),
        }];
        if let Some(t) = *self.tls.read().unwrap_or_else(|e| e.into_inner()) {
            out.push(CertExpiry {
                subject: "tls".into(),
                not_after: t,
            });
        }
        for (name, not_after) in self.ledger.node_cert_expiry() {
            if name != self.me {
                out.push(CertExpiry {
                    subject: format!("peer:{name}"),
                    not_after,
                });
            }
        }
        out
    }

    /// Whether a certificate ending at `not_after` is within the warning window at `now_s`.
    pub fn is_expiring(&self, not_after: u64, now_s: u64) -> bool {
        not_after <= now_s.saturating_add(self.warn_s)
    }

    /// Sets `sphr_cert_expiry_seconds` and `sphr_cert_expiring` (at scrape time).
    pub fn sample(&self, m: &Metrics, now_s: u64) {
        for e in self.expiries() {
            let left = i64::try_from(e.not_after)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(now_s).unwrap_or(i64::MAX));
            m.cert_expiry_seconds
                .with_label_values(&[e.subject.as_str()])
                .set(left);
            m.cert_expiring
                .with_label_values(&[e.subject.as_str()])
                .set(i64::from(self.is_expiring(e.not_after, now_s)));
        }
    }

    /// Logs a warning per certificate within the window; returns how many.
    pub fn warn_expiring(&self, now_s: u64) -> usize {
        let mut n = 0;
        for e in self.expiries() {
            if !self.is_expiring(e.not_after, now_s) {
                continue;
            }
            n += 1;
            if e.not_after <= now_s {
                warn!(target: "sphr::certs", subject = %e.subject, not_after = e.not_after,
                      expired_s_ago = now_s - e.not_after,
                      "certificate EXPIRED: renew it (sphr-node cert renew, then SIGHUP the node)");
            } else {
                let left = e.not_after - now_s;
                warn!(target: "sphr::certs", subject = %e.subject, not_after = e.not_after,
                      days_left = left / 86_400, seconds_left = left,
                      "certificate expires soon: renew it (sphr-node cert renew, then SIGHUP the node)");
            }
        }
        n
    }
}

/// Warns about expiring certificates now and then every `every`, until the task is dropped.
pub async fn warn_periodically(watch: Arc<CertWatch>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let w = watch.clone();
        // The peers' dates come from the ledger, which may wait for a commit.
        let n = tokio::task::spawn_blocking(move || w.warn_expiring(crate::now_ms() / 1000))
            .await
            .unwrap_or(0);
        if n == 0 {
            info!(target: "sphr::certs", "no certificate expires within the warning window");
        }
    }
}

/// The end of validity (Unix seconds) of the first certificate of a PEM file.
pub fn tls_not_after(pem: &Path) -> Result<u64, String> {
    let certs = crate::tls::load_certs(pem).map_err(|e| e.to_string())?;
    let first = certs
        .first()
        .ok_or_else(|| format!("{}: no certificate", pem.display()))?;
    x509_validity(first.as_ref())
        .map(|(_, not_after)| not_after)
        .ok_or_else(|| format!("{}: cannot read the certificate's validity", pem.display()))
}

/// One DER element: (tag, contents, rest). Definite lengths only, as DER requires.
fn der_next(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// (not_before, not_after) of an X.509 certificate (DER), in Unix seconds.
pub fn x509_validity(der: &[u8]) -> Option<(u64, u64)> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der_next(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_next(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    let (tag, _, rest) = der_next(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
        let (_, _, rest) = der_next(tbs)?; // serialNumber
        tbs = rest;
    } else {
        tbs = rest; // that was the serialNumber
    }
    let (_, _, rest) = der_next(tbs)?; // signature algorithm
    let (_, _, rest) = der_next(rest)?; // issuer
    let (tag, validity, _) = der_next(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (t1, nb, rest) = der_next(validity)?;
    let (t2, na, _) = der_next(rest)?;
    Some((der_time(t1, nb)?, der_time(t2, na)?))
}

/// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`) to Unix
/// seconds.
fn der_time(tag: u8, b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    let s = s.strip_suffix('Z')?;
    if !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let month = num(rest..rest + 2)?;
    let day = num(rest + 2..rest + 4)?;
    let hour = num(rest + 4..rest + 6)?;
    let min = num(rest + 6..rest + 8)?;
    let sec = num(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (from 1970 on).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = i64::try_from(y).ok()? - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::try_from(m).ok()?;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::try_from(d).ok()? - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert_with(not_before: u64, not_after: u64) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        p.not_before = epoch + Duration::from_secs(not_before);
        p.not_after = epoch + Duration::from_secs(not_after);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // 2024-02-29T12:34:56Z (UTCTime) and 2061-01-01T00:00:00Z (GeneralizedTime).
        let (nb, na) = (1_709_210_096, 2_871_763_200);
        assert_eq!(x509_validity(&cert_with(nb, na)), Some((nb, na)));
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        let good = cert_with(0, 86_400);
        for cut in 0..good.len() {
            let _ = x509_validity(&good[..cut]);
        }
        assert_eq!(x509_validity(&[]), None);
        assert_eq!(x509_validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(der_time(0x17, b"991332000000Z"), None);
        assert_eq!(der_time(0x18, b"20240101000000"), None);
    }
}
