//! State keys of the healthcare contract (inside its own namespace).
//!
//! Names (org, subject id) hold no control character (certificates and inputs are checked),
//! so a NUL separates them and the prefix of one owner never covers the keys of another.
//! Ids are 32 raw bytes; days are u64 big-endian, so key order is day order.

use sphr_crypto::hash::Hash32;

use super::types::Identity;

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

fn with(mut prefix: Vec<u8>, tail: &[&[u8]]) -> Vec<u8> {
    for t in tail {
        prefix.extend_from_slice(t);
    }
    prefix
}

/// `user\0<org>\0`: the users of one org.
pub(super) fn user_prefix(org: &str) -> Vec<u8> {
    key(&[b"user", org.as_bytes(), b""])
}

/// `user\0<org>\0<id>`
pub(super) fn user(u: &Identity) -> Vec<u8> {
    with(user_prefix(&u.org), &[u.id.as_bytes()])
}

/// `appt\0<appointment id>`
pub(super) fn appointment(id: &Hash32) -> Vec<u8> {
    key(&[b"appt", id.as_bytes()])
}

/// `apptDay\0<doctor org>\0<doctor id>\0<day>`: a doctor's appointments of one day.
pub(super) fn appointment_day_prefix(doctor: &Identity, day: u64) -> Vec<u8> {
    with(
        key(&[b"apptDay", doctor.org.as_bytes(), doctor.id.as_bytes(), b""]),
        &[&day.to_be_bytes()],
    )
}

/// `apptDay\0<doctor org>\0<doctor id>\0<day><appointment id>` (value: the id).
pub(super) fn appointment_day(doctor: &Identity, day: u64, id: &Hash32) -> Vec<u8> {
    with(appointment_day_prefix(doctor, day), &[id.as_bytes()])
}

/// `rx\0<appointment id>`
pub(super) fn prescription(id: &Hash32) -> Vec<u8> {
    key(&[b"rx", id.as_bytes()])
}

/// `report\0<appointment id><index u32>`
pub(super) fn lab_report(id: &Hash32, index: u32) -> Vec<u8> {
    with(key(&[b"report", id.as_bytes()]), &[&index.to_be_bytes()])
}

/// `bill\0<bill id>`
pub(super) fn bill(id: &Hash32) -> Vec<u8> {
    key(&[b"bill", id.as_bytes()])
}

/// `deleg\0<appointment id>`: the requests for one prescription.
pub(super) fn delegation_prefix(id: &Hash32) -> Vec<u8> {
    key(&[b"deleg", id.as_bytes()])
}

/// `deleg\0<appointment id><requester org>\0<requester id>`
pub(super) fn delegation(id: &Hash32, requester: &Identity) -> Vec<u8> {
    with(
        delegation_prefix(id),
        &[requester.org.as_bytes(), b"\0", requester.id.as_bytes()],
    )
}

/// `plan\0<plan id>`
pub(super) fn plan(id: &Hash32) -> Vec<u8> {
    key(&[b"plan", id.as_bytes()])
}

/// `planDay\0<insurer org>\0<day>`: plans asked of an insurer on one day.
pub(super) fn plan_day_prefix(insurer: &str, day: u64) -> Vec<u8> {
    with(
        key(&[b"planDay", insurer.as_bytes(), b""]),
        &[&day.to_be_bytes()],
    )
}

/// `planDay\0<insurer org>\0<day><plan id>` (value: the id).
pub(super) fn plan_day(insurer: &str, day: u64, id: &Hash32) -> Vec<u8> {
    with(plan_day_prefix(insurer, day), &[id.as_bytes()])
}

/// `payreq\0<insurer org>\0<day>`: payment requests approved for an insurer on one day.
pub(super) fn payment_request_prefix(insurer: &str, day: u64) -> Vec<u8> {
    with(
        key(&[b"payreq", insurer.as_bytes(), b""]),
        &[&day.to_be_bytes()],
    )
}

/// `payreq\0<insurer org>\0<day><bill id>`
pub(super) fn payment_request(insurer: &str, day: u64, bill_id: &Hash32) -> Vec<u8> {
    with(payment_request_prefix(insurer, day), &[bill_id.as_bytes()])
}

/// The smallest key after every key that starts with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return end;
        }
    }
    // Only a prefix of 0xff bytes gets here (none of ours starts with one): every key that
    // fits the key limit sorts before this.
    vec![0xff; crate::MAX_KEY_LEN + 1]
}

/// The smallest key after `key`: `key || 0x00`. Used as the start of the next page after a key
/// whose tail is a fixed-length id or a NUL-free name, so no stored key lies in between.
pub(super) fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap_owners() {
        let a = Identity::new("A", "b");
        let b = Identity::new("A", "bc");
        let h = Hash32([0xff; 32]);
        assert!(user(&a).starts_with(&user_prefix("A")));
        assert!(!user(&a).starts_with(&user_prefix("AB")));
        assert!(appointment_day(&a, 3, &h).starts_with(&appointment_day_prefix(&a, 3)));
        assert!(!appointment_day(&b, 3, &h).starts_with(&appointment_day_prefix(&a, 3)));
        assert!(!appointment_day(&a, 4, &h).starts_with(&appointment_day_prefix(&a, 3)));
        assert!(appointment_day(&a, 3, &h) < prefix_end(&appointment_day_prefix(&a, 3)));
        assert!(delegation(&h, &a).starts_with(&delegation_prefix(&h)));
        assert!(!delegation(&Hash32::ZERO, &a).starts_with(&delegation_prefix(&h)));
        assert!(plan_day("I", 1, &h) < plan_day("I", 2, &Hash32::ZERO));
        assert!(payment_request("I", 1, &h).starts_with(&payment_request_prefix("I", 1)));
        assert!(!payment_request("IX", 1, &h).starts_with(&payment_request_prefix("I", 1)));
        assert!(lab_report(&h, 1) < lab_report(&h, 2));
        assert_eq!(prefix_end(b"ab\xff"), b"ac".to_vec());
        assert!(after(&user(&a)) > user(&a));
        assert!(after(&user(&a)) <= user(&Identity::new("A", "b\u{1}")));
    }
}
