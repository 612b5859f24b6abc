//! BLS12-381 building blocks for [`super`] (AFGH), written on the raw `blst_*` functions.
//!
//! This is the only module of `sphr-crypto` that may use `unsafe`: every `unsafe` block is a
//! call into blst's C code (or, once, a look at its static generator points) and says why the
//! pointers it passes are valid. Everything here is crate-private; [`super`] is the API.
//!
//! What it provides, and how each piece is made fast without giving up constant time:
//!
//! - [`Scalar`]: an integer mod r (blst zeroizes it on drop).
//! - [`GlsDigits`]: a scalar `s` split as `s = d0 + d1*u + d2*u^2 + d3*u^3` with `0 <= di < u`,
//!   where `u = |x| = 0xd201000000010000` is the BLS parameter. In GT the p-power Frobenius map
//!   `pi` is exponentiation by `p`, and `p = x (mod r)`, so `f^u = conj(pi(f))`,
//!   `f^(u^2) = pi^2(f)`, `f^(u^3) = conj(pi^3(f))`: a 255-bit exponentiation becomes four
//!   64-bit ones that share their squarings (the GLS method). The split is a branch-free
//!   bit-by-bit long division.
//! - [`gt_pow`] (variable base, e.g. the delegatee's `c1'^(1/b2)`): the four GLS bases by
//!   Frobenius, a joint table of their 8 sign-aligned products, then the GLV-SAC recoding of
//!   the four digits: 64 cyclotomic squarings and 72 multiplications in all.
//! - [`GtTable`] (fixed base, the recipient's `Z^a1` in encryption): `B_i^(j * 2^(5n))` for the
//!   four GLS bases, 13 windows, `j = 1..16`: no squaring at all, 52 multiplications
//!   (about 480 KB per table).
//! - [`G1::mul_generator`] (`g1^k` in encryption): a static table of `j * 2^(5n) * g1` for 52
//!   windows (80 KB, built once per process), 52 mixed additions, no doubling.
//! - [`Lines`] + [`pairing`]: blst's precomputed Miller-loop lines for a fixed G2 point (the
//!   owner's `g2^a1`, or a re-encryption key), then `blst_miller_loop_lines` and
//!   `blst_final_exp`.
//!
//! Every table read is a full scan under a mask (`core::hint::black_box` keeps the compiler
//! from turning the mask back into a branch, which it does otherwise: checked on x86-64),
//! negation of a looked-up entry is blst's branch-free conditional negation, and blst's own
//! point arithmetic (`blst_p1_add_or_double_affine`, `blst_p2_mult`, the Fp12 operations) is
//! constant-time. So the running time of sealing, opening and key generation does not depend
//! on `k`, `a1` or `1/a2`.

#![allow(unsafe_code)]

use core::hint::black_box;
use std::sync::OnceLock;

use blst::{
    BLST_ERROR, blst_bendian_from_fp12, blst_bendian_from_scalar, blst_final_exp, blst_fp,
    blst_fp_cneg, blst_fp_from_bendian, blst_fp2_cneg, blst_fp6, blst_fp12, blst_fp12_conjugate,
    blst_fp12_cyclotomic_sqr, blst_fp12_frobenius_map, blst_fp12_in_group, blst_fp12_is_equal,
    blst_fp12_is_one, blst_fp12_mul, blst_miller_loop, blst_miller_loop_lines, blst_p1,
    blst_p1_add_or_double, blst_p1_add_or_double_affine, blst_p1_affine, blst_p1_affine_compress,
    blst_p1_affine_generator, blst_p1_affine_in_g1, blst_p1_affine_is_inf, blst_p1_double,
    blst_p1_generator, blst_p1_to_affine, blst_p1_uncompress, blst_p1s_to_affine, blst_p2,
    blst_p2_affine, blst_p2_affine_compress, blst_p2_affine_generator, blst_p2_affine_in_g2,
    blst_p2_affine_is_inf, blst_p2_from_affine, blst_p2_mult, blst_p2_to_affine,
    blst_p2_uncompress, blst_precompute_lines, blst_scalar, blst_scalar_from_be_bytes,
    blst_scalar_from_bendian, blst_sk_check, blst_sk_inverse, limb_t,
};
use zeroize::{Zeroize, Zeroizing};

use super::PreError;

/// Bytes of a big-endian scalar.
pub(crate) const SCALAR_LEN: usize = 32;
/// Bytes of a compressed G1 point.
pub(crate) const G1_LEN: usize = 48;
/// Bytes of a compressed G2 point.
pub(crate) const G2_LEN: usize = 96;
/// Bytes of one base-field element.
const FP_LEN: usize = 48;
/// Bytes of a GT element: twelve base-field elements.
pub(crate) const GT_LEN: usize = 12 * FP_LEN;

/// The base-field modulus p, big-endian: an encoded Fp must be below it.
const P_BE: [u8; FP_LEN] = [
    0x1a, 0x01, 0x11, 0xea, 0x39, 0x7f, 0xe6, 0x9a, 0x4b, 0x1b, 0xa7, 0xb6, 0x43, 0x4b, 0xac, 0xd7,
    0x64, 0x77, 0x4b, 0x84, 0xf3, 0x85, 0x12, 0xbf, 0x67, 0x30, 0xd2, 0xa0, 0xf6, 0xb0, 0xf6, 0x24,
    0x1e, 0xab, 0xff, 0xfe, 0xb1, 0x53, 0xff, 0xff, 0xb9, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xaa, 0xab,
];

/// `u = |x|`, the absolute value of the BLS12-381 parameter `x = -0xd201000000010000`.
pub(crate) const U: u64 = 0xd201_0000_0001_0000;

/// Bits of a scalar given to blst's multiplications (r < 2^255).
const SCALAR_BITS: usize = 255;

/// Window width of the signed (Booth) recoding of the fixed-base tables (G1 and GT).
const WINDOW: usize = 5;
/// Entries per window table: the magnitudes 1..=16 of a signed 5-bit digit.
const TABLE: usize = 1 << (WINDOW - 1);
/// Windows that cover a 64-bit GLS digit (Booth needs one bit more: 13 * 5 = 65).
const GLS_WINDOWS: usize = 13;
/// Windows that cover a scalar below 2^255 (52 * 5 = 260 > 256).
const G1_WINDOWS: usize = 52;
/// Miller-loop lines that blst precomputes for one G2 point.
const LINES: usize = 68;

// ---------------------------------------------------------------------------------------------
// Constant-time helpers.

/// All ones if `a == b`, else zero; the result goes through `black_box` so that the optimiser
/// cannot see it is a 0/1 mask and turn the masked reads that use it into branches.
#[inline]
fn ct_eq_mask(a: u64, b: u64) -> limb_t {
    let x = a ^ b;
    let is_nonzero = (x | x.wrapping_neg()) >> 63;
    black_box(is_nonzero.wrapping_sub(1) as limb_t)
}

/// The magnitude and the sign (1 if negative) of a signed window digit, without branches.
#[inline]
fn digit_parts(c: i8) -> (u64, bool) {
    let sign = c >> 7; // 0 or -1
    let abs = (c ^ sign).wrapping_sub(sign) as u8;
    (u64::from(abs), sign != 0)
}

/// Signed 5-bit Booth digit of six bits `b(5n+4) .. b(5n-1)` of a number: in `-16..=16`.
#[inline]
fn booth_digit(v6: u8) -> i8 {
    let v6 = v6 & 0x3f;
    let magnitude = (v6 >> 1) + (v6 & 1); // 0..=32
    let top = v6 >> 5; // the bit that makes the digit negative
    (magnitude as i8).wrapping_sub((top << 5) as i8)
}

/// Booth digits of a 64-bit GLS digit, least significant window first.
fn booth_u64(d: u64) -> [i8; GLS_WINDOWS] {
    let x = u128::from(d) << 1; // bit -1 of the number is 0
    let mut out = [0i8; GLS_WINDOWS];
    for (n, o) in out.iter_mut().enumerate() {
        *o = booth_digit(((x >> (WINDOW * n)) & 0x3f) as u8);
    }
    out
}

/// Booth digits of a scalar below 2^255 given as little-endian 64-bit limbs.
fn booth_scalar(limbs: &[u64; 4]) -> [i8; G1_WINDOWS] {
    // The number shifted left by one (so that window n starts at bit 5n), in five limbs.
    let mut x = [0u64; 5];
    for i in 0..4 {
        x[i] |= limbs[i] << 1;
        x[i + 1] = limbs[i] >> 63;
    }
    let mut out = [0i8; G1_WINDOWS];
    for (n, o) in out.iter_mut().enumerate() {
        // The position depends only on n, never on the secret.
        let pos = WINDOW * n;
        let (i, off) = (pos / 64, pos % 64);
        let mut v = x[i] >> off;
        if off > 64 - 6 && i + 1 < x.len() {
            v |= x[i + 1] << (64 - off);
        }
        *o = booth_digit((v & 0x3f) as u8);
    }
    x.zeroize();
    out
}

/// `(n / U, n mod U)` for `n < 2^bits`, by restoring division one bit at a time, branch-free.
fn ct_divrem_u(n: &[u64; 4], bits: usize) -> ([u64; 4], u64) {
    debug_assert!(bits <= 256);
    let mut q = [0u64; 4];
    let mut rem: u128 = 0; // always < U, so the shifted value fits in 65 bits
    for i in (0..bits).rev() {
        let bit = (n[i / 64] >> (i % 64)) & 1;
        rem = (rem << 1) | u128::from(bit);
        let diff = rem.wrapping_sub(u128::from(U));
        let take = black_box(1 ^ (diff >> 127) as u64); // 1 iff rem >= U
        let mask = u128::from(take).wrapping_neg();
        rem = (diff & mask) | (rem & !mask);
        q[i / 64] |= take << (i % 64);
    }
    (q, rem as u64)
}

// ---------------------------------------------------------------------------------------------
// Scalars.

/// An integer mod r. The inner `blst_scalar` zeroizes itself on drop.
#[derive(Clone)]
pub(crate) struct Scalar(blst_scalar);

impl Scalar {
    /// A canonical big-endian scalar in `1..r`, or `None`.
    pub(crate) fn from_be_bytes(bytes: &[u8; SCALAR_LEN]) -> Option<Self> {
        let mut s = blst_scalar::default();
        // SAFETY: `s` is a valid out-pointer; blst reads exactly 32 bytes from `bytes`.
        unsafe { blst_scalar_from_bendian(&mut s, bytes.as_ptr()) };
        // SAFETY: `s` is a valid, initialised blst_scalar.
        let in_range = unsafe { blst_sk_check(&s) };
        in_range.then_some(Self(s))
    }

    /// Reduces 64 bytes (big-endian) mod r; `None` if the result is zero. The bias of the
    /// reduction is below 2^-255.
    pub(crate) fn from_wide_bytes(bytes: &[u8; 64]) -> Option<Self> {
        let mut s = blst_scalar::default();
        // SAFETY: `s` is a valid out-pointer; blst reads `bytes.len()` bytes from `bytes`.
        let nonzero = unsafe { blst_scalar_from_be_bytes(&mut s, bytes.as_ptr(), bytes.len()) };
        nonzero.then_some(Self(s))
    }

    /// A uniformly random scalar in `1..r` from the operating system.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        loop {
            let mut wide = Zeroizing::new([0u8; 64]);
            getrandom::fill(&mut wide[..])?;
            if let Some(s) = Self::from_wide_bytes(&wide) {
                return Ok(s);
            }
        }
    }

    /// Big-endian bytes.
    pub(crate) fn to_be_bytes(&self) -> Zeroizing<[u8; SCALAR_LEN]> {
        let mut out = Zeroizing::new([0u8; SCALAR_LEN]);
        // SAFETY: `out` has the 32 bytes blst writes; `self.0` is initialised.
        unsafe { blst_bendian_from_scalar(out.as_mut_ptr(), &self.0) };
        out
    }

    /// `1/self mod r` (constant time in blst). `self` is never zero by construction.
    pub(crate) fn inverse(&self) -> Self {
        let mut out = blst_scalar::default();
        // SAFETY: valid out-pointer and input, both 32 bytes.
        unsafe { blst_sk_inverse(&mut out, &self.0) };
        Self(out)
    }

    /// Little-endian 64-bit limbs.
    pub(crate) fn limbs(&self) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (o, chunk) in out.iter_mut().zip(self.0.b.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            *o = u64::from_le_bytes(le);
            le.zeroize();
        }
        out
    }

    /// Wipes the value (the key is unusable afterwards).
    pub(crate) fn wipe(&mut self) {
        self.0.zeroize();
    }
}

/// A scalar split into four 64-bit digits in base [`U`]: `s = d0 + d1*u + d2*u^2 + d3*u^3`.
/// Zeroized on drop.
#[derive(Clone)]
pub(crate) struct GlsDigits([u64; 4]);

impl Drop for GlsDigits {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl GlsDigits {
    pub(crate) fn new(s: &Scalar) -> Self {
        let mut n = s.limbs();
        let mut d = [0u64; 4];
        // s < r < 2^255; u > 2^63, so s/u < 2^192 and s/u^2 < 2^129; s < u^4 so s/u^3 < u.
        for (digit, bits) in d.iter_mut().zip([256, 192, 129]) {
            let (q, r) = ct_divrem_u(&n, bits);
            *digit = r;
            n = q;
        }
        d[3] = n[0];
        debug_assert!(n[1] == 0 && n[2] == 0 && n[3] == 0 && n[0] < U);
        n.zeroize();
        Self(d)
    }

    #[cfg(test)]
    pub(crate) fn digits(&self) -> [u64; 4] {
        self.0
    }

    /// The signed window digits of each of the four GLS digits.
    fn booth(&self) -> Zeroizing<[[i8; GLS_WINDOWS]; 4]> {
        let mut out = Zeroizing::new([[0i8; GLS_WINDOWS]; 4]);
        for (o, d) in out.iter_mut().zip(self.0) {
            *o = booth_u64(d);
        }
        out
    }

    pub(crate) fn wipe(&mut self) {
        self.0.zeroize();
    }
}

// ---------------------------------------------------------------------------------------------
// GT.

/// An element of GT, the order-r subgroup of Fp12 (in blst's Montgomery form).
#[derive(Clone)]
pub(crate) struct Gt(blst_fp12);

fn fp12_zero() -> blst_fp12 {
    blst_fp12 {
        fp6: [blst_fp6::default(); 2],
    }
}

/// `dst |= src & mask`, limb by limb.
#[inline]
fn fp12_or_masked(dst: &mut blst_fp12, src: &blst_fp12, mask: limb_t) {
    for (d6, s6) in dst.fp6.iter_mut().zip(&src.fp6) {
        for (d2, s2) in d6.fp2.iter_mut().zip(&s6.fp2) {
            for (d, s) in d2.fp.iter_mut().zip(&s2.fp) {
                for (dl, sl) in d.l.iter_mut().zip(&s.l) {
                    *dl |= *sl & mask;
                }
            }
        }
    }
}

fn fp12_wipe(x: &mut blst_fp12) {
    for f6 in &mut x.fp6 {
        for f2 in &mut f6.fp2 {
            for f in &mut f2.fp {
                f.l.zeroize();
            }
        }
    }
}

impl PartialEq for Gt {
    fn eq(&self, other: &Self) -> bool {
        // SAFETY: both pointers are valid blst_fp12 values.
        unsafe { blst_fp12_is_equal(&self.0, &other.0) }
    }
}

impl Eq for Gt {}

impl Gt {
    pub(crate) fn one() -> Self {
        // blst's Default for fp12 is its multiplicative identity.
        Self(blst_fp12::default())
    }

    /// `Z = e(g1, g2)`, computed once per process.
    pub(crate) fn generator() -> &'static Self {
        static Z: OnceLock<Gt> = OnceLock::new();
        Z.get_or_init(|| pairing_plain(&G1::generator(), &G2::generator()))
    }

    pub(crate) fn is_one(&self) -> bool {
        // SAFETY: valid blst_fp12.
        unsafe { blst_fp12_is_one(&self.0) }
    }

    pub(crate) fn mul_assign(&mut self, other: &Self) {
        let p: *mut blst_fp12 = &mut self.0;
        // SAFETY: `p` is valid for reads and writes; blst allows the output to alias an input.
        unsafe { blst_fp12_mul(p, p, &other.0) };
    }

    /// Squaring for elements of the cyclotomic subgroup (every GT element is one).
    pub(crate) fn square(&mut self) {
        let p: *mut blst_fp12 = &mut self.0;
        // SAFETY: `p` is valid for reads and writes; blst allows the output to alias the input.
        unsafe { blst_fp12_cyclotomic_sqr(p, p) };
    }

    /// Inverse of a GT element (conjugation).
    pub(crate) fn conjugate(&mut self) {
        // SAFETY: valid blst_fp12, modified in place.
        unsafe { blst_fp12_conjugate(&mut self.0) };
    }

    /// The p-power Frobenius map: `f^p = f^x` in GT.
    pub(crate) fn frobenius(&self) -> Self {
        let mut out = fp12_zero();
        // SAFETY: valid out-pointer and input.
        unsafe { blst_fp12_frobenius_map(&mut out, &self.0, 1) };
        Self(out)
    }

    /// Canonical bytes: the six Fp2 coefficients of `1, w, w^2, w^3, w^4, w^5`
    /// (Fp12 = Fp2[w]/(w^6 - (1 + i))), each as `c0 || c1`, each Fp 48 bytes big-endian.
    /// This is blst's `blst_bendian_from_fp12` order.
    pub(crate) fn to_bytes(&self) -> [u8; GT_LEN] {
        let mut out = [0u8; GT_LEN];
        // SAFETY: `out` has the 576 bytes blst writes; `self.0` is initialised.
        unsafe { blst_bendian_from_fp12(out.as_mut_ptr(), &self.0) };
        out
    }

    /// Parses [`Gt::to_bytes`]: each Fp must be below p, and the element must be in GT and not
    /// the identity.
    pub(crate) fn from_bytes(bytes: &[u8; GT_LEN], what: &'static str) -> Result<Self, PreError> {
        let mut f = fp12_zero();
        let mut chunks = bytes.chunks_exact(FP_LEN);
        // Same order as blst_bendian_from_fp12: Fp2 index, then Fp6 index, then c0, c1.
        for i in 0..3 {
            for j in 0..2 {
                for c in 0..2 {
                    let chunk = chunks.next().ok_or(PreError::Encoding { what })?;
                    if chunk >= &P_BE[..] {
                        return Err(PreError::NonCanonical { what });
                    }
                    let dst: &mut blst_fp = &mut f.fp6[j].fp2[i].fp[c];
                    // SAFETY: `chunk` has exactly 48 bytes (chunks_exact); `dst` is valid.
                    unsafe { blst_fp_from_bendian(dst, chunk.as_ptr()) };
                }
            }
        }
        // SAFETY: valid blst_fp12. blst_fp12_in_group rejects zero, non-cyclotomic elements
        // and elements outside the order-r subgroup (pi(f) == f^x).
        if !unsafe { blst_fp12_in_group(&f) } {
            return Err(PreError::NotInSubgroup { what });
        }
        let gt = Self(f);
        if gt.is_one() {
            return Err(PreError::Identity { what });
        }
        Ok(gt)
    }

    pub(crate) fn wipe(&mut self) {
        fp12_wipe(&mut self.0);
    }

    /// `row[pos]` read by scanning the whole row under masks (all zeros if `pos` is out of
    /// range), then inverted (conjugated) if `negative`.
    fn pick(row: &[Self], pos: u64, negative: bool) -> blst_fp12 {
        let mut out = fp12_zero();
        for (j, entry) in (0u64..).zip(row) {
            fp12_or_masked(&mut out, &entry.0, ct_eq_mask(pos, j));
        }
        // Conjugation negates the w-odd half; blst's conditional negation is branch-free.
        for f2 in &mut out.fp6[1].fp2 {
            let p: *mut blst::blst_fp2 = f2;
            // SAFETY: `p` is valid for reads and writes; in-place use is supported by blst.
            unsafe { blst_fp2_cneg(p, p, negative) };
        }
        out
    }

    /// For a signed window digit `c`: `row[|c| - 1]`, inverted if `c < 0`, or one if `c == 0`.
    fn select(row: &[Self; TABLE], c: i8) -> Self {
        let (abs, negative) = digit_parts(c);
        let mut out = Self::pick(row, abs.wrapping_sub(1), negative);
        fp12_or_masked(&mut out, &Self::one().0, ct_eq_mask(abs, 0));
        Self(out)
    }

    /// `[f, f^2, ..., f^16]`.
    fn powers(f: &Self) -> [Self; TABLE] {
        let mut row: [Self; TABLE] = core::array::from_fn(|_| f.clone());
        row[1].square();
        for j in 2..TABLE {
            let mut next = row[j - 1].clone();
            next.mul_assign(f);
            row[j] = next;
        }
        row
    }

    /// The same row for the next GLS base: `pi` applied to every entry.
    fn frobenius_row(row: &[Self; TABLE]) -> [Self; TABLE] {
        core::array::from_fn(|j| row[j].frobenius())
    }

    /// Entries of row `i` of a GLS table are `conj^i(pi^i(.))` of row 0: given
    /// `pi^i(.)`, conjugate if `i` is odd.
    fn gls_row(frobenius_i: &[Self; TABLE], i: usize) -> [Self; TABLE] {
        let mut row = frobenius_i.clone();
        if i % 2 == 1 {
            for e in &mut row {
                e.conjugate();
            }
        }
        row
    }
}

/// Positions of the sign-aligned column recoding of four 64-bit digits.
const SAC_LEN: usize = 65;

/// Sign-aligned column (GLV-SAC) recoding of the four GLS digits, after Faz-Hernandez, Longa
/// and Sanchez (2014), algorithm 1, branch-free. With `d0` odd, every digit is written
/// `dj = sum_i bj[i] 2^i` over 65 positions with `b0[i]` in `{-1, 1}` and `bj[i]` in
/// `{0, b0[i]}`. So column `i` is `T[idx[i]]^(b0[i])` with the joint table
/// `T[v] = B0 * prod{j : bit j-1 of v} Bj` of 8 entries. Returns `idx` and whether `b0[i] < 0`.
fn sac_recode(d: &[u64; 4]) -> Zeroizing<([u8; SAC_LEN], [u8; SAC_LEN])> {
    let mut out = Zeroizing::new(([0u8; SAC_LEN], [0u8; SAC_LEN]));
    let (idx, neg) = &mut *out;
    let k0 = u128::from(d[0]);
    // b0[i] = 2 * bit(i + 1) - 1 for i < 64, b0[64] = 1; stored as "is negative".
    for (i, n) in neg.iter_mut().enumerate() {
        *n = (1 ^ ((k0 >> (i + 1)) & 1)) as u8;
    }
    neg[SAC_LEN - 1] = 0;
    for (j, dj) in d.iter().enumerate().skip(1) {
        let mut k = i128::from(*dj);
        for (i, slot) in idx.iter_mut().enumerate() {
            let bit = (k & 1) as i8; // is bj[i] non-zero?
            let sign = 1 - 2 * (neg[i] as i8); // b0[i]
            k = (k - i128::from(sign * bit)) >> 1; // exact: k - bj[i] is even
            *slot |= (bit as u8) << (j - 1);
        }
        debug_assert_eq!(k, 0);
    }
    out
}

/// `base^e` for a variable base in GT (e.g. the delegatee's `c1'^(1/b2)`), constant time in `e`:
/// the four GLS bases from three Frobenius maps, a joint table of 8 products (7
/// multiplications), then 64 cyclotomic squarings and 65 multiplications over the
/// sign-aligned columns.
pub(crate) fn gt_pow(base: &Gt, e: &GlsDigits) -> Gt {
    // B0 = base, B_i = base^(u^i) = conj^i(pi^i(base)).
    let b0 = base.clone();
    let pi1 = b0.frobenius();
    let pi2 = pi1.frobenius();
    let mut b3 = pi2.frobenius();
    b3.conjugate();
    let mut b1 = pi1;
    b1.conjugate();
    let bases = [b1, pi2, b3];
    // T[v] = B0 * prod{j : bit j-1 of v} Bj.
    let mut table: [Gt; 8] = core::array::from_fn(|_| b0.clone());
    for v in 1..8 {
        let top = 7 - (v as u8).leading_zeros() as usize; // highest set bit of v
        let mut t = table[v & !(1 << top)].clone();
        t.mul_assign(&bases[top]);
        table[v] = t;
    }

    // d0 must be odd: use d0 | 1 and divide by B0 at the end if d0 was even.
    let mut digits = e.0;
    let even = 1 ^ (digits[0] & 1);
    digits[0] |= 1;
    let recoded = sac_recode(&digits);
    digits.zeroize();
    let (idx, neg) = &*recoded;

    let mut acc = Gt(Gt::pick(&table, u64::from(idx[SAC_LEN - 1]), false));
    for i in (0..SAC_LEN - 1).rev() {
        acc.square();
        acc.mul_assign(&Gt(Gt::pick(&table, u64::from(idx[i]), neg[i] != 0)));
    }
    // Correction: times B0^-1 = conj(B0) if d0 was even, else times 1.
    let mut corr = fp12_zero();
    fp12_or_masked(&mut corr, &b0.0, ct_eq_mask(even, 1));
    fp12_or_masked(&mut corr, &Gt::one().0, ct_eq_mask(even, 0));
    let mut corr = Gt(corr);
    let negate: *mut blst_fp12 = &mut corr.0;
    // Conjugate only the selected B0: conj(1) = 1, so conjugating unconditionally is right.
    // SAFETY: valid blst_fp12, modified in place.
    unsafe { blst_fp12_conjugate(negate) };
    acc.mul_assign(&corr);
    acc
}

/// Fixed-base exponentiation table for one GT element (a recipient's `Z^a1`):
/// `rows[i * 13 + n][j - 1] = B_i^(j * 2^(5n))` with `B_i = base^(u^i)`.
pub(crate) struct GtTable {
    rows: Vec<[Gt; TABLE]>,
}

impl GtTable {
    /// Bytes of memory a table takes.
    pub(crate) const SIZE: usize = 4 * GLS_WINDOWS * TABLE * core::mem::size_of::<Gt>();

    pub(crate) fn new(base: &Gt) -> Self {
        let mut first = Vec::with_capacity(GLS_WINDOWS);
        let mut b = base.clone();
        for n in 0..GLS_WINDOWS {
            if n > 0 {
                for _ in 0..WINDOW {
                    b.square();
                }
            }
            first.push(Gt::powers(&b));
        }
        let mut rows = first.clone();
        rows.reserve(3 * GLS_WINDOWS);
        // Rows of B_i = conj^i(pi^i(B_0)): apply pi to the previous (unconjugated) rows.
        let mut frob = first;
        for i in 1..4 {
            frob = frob.iter().map(Gt::frobenius_row).collect();
            rows.extend(frob.iter().map(|r| Gt::gls_row(r, i)));
        }
        Self { rows }
    }

    /// `base^e`, constant time in `e`: 52 masked reads and multiplications.
    pub(crate) fn pow(&self, e: &GlsDigits) -> Gt {
        let digits = e.booth();
        let mut acc = Gt::one();
        for (row, c) in self.rows.iter().zip(digits.iter().flatten()) {
            acc.mul_assign(&Gt::select(row, *c));
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// G1.

/// A point of G1: on the curve, in the order-r subgroup, not the identity.
#[derive(Clone)]
pub(crate) struct G1(blst_p1_affine);

impl G1 {
    pub(crate) fn generator() -> Self {
        // SAFETY: blst returns a pointer to its static, initialised generator.
        Self(unsafe { *blst_p1_affine_generator() })
    }

    /// Parses a compressed point (ZCash format) and checks it.
    pub(crate) fn from_compressed(
        bytes: &[u8; G1_LEN],
        what: &'static str,
    ) -> Result<Self, PreError> {
        let mut p = blst_p1_affine::default();
        // SAFETY: `p` is a valid out-pointer; blst reads exactly 48 bytes (the compression bit
        // is checked before anything else, so it never reads the 96-byte form).
        let err = unsafe { blst_p1_uncompress(&mut p, bytes.as_ptr()) };
        check_decode(err, what)?;
        // SAFETY: `p` is an initialised affine point.
        if unsafe { blst_p1_affine_is_inf(&p) } {
            return Err(PreError::Identity { what });
        }
        // SAFETY: as above.
        if !unsafe { blst_p1_affine_in_g1(&p) } {
            return Err(PreError::NotInSubgroup { what });
        }
        Ok(Self(p))
    }

    pub(crate) fn to_compressed(&self) -> [u8; G1_LEN] {
        let mut out = [0u8; G1_LEN];
        // SAFETY: `out` has the 48 bytes blst writes.
        unsafe { blst_p1_affine_compress(out.as_mut_ptr(), &self.0) };
        out
    }

    /// `k * g1` with the static fixed-base table; constant time in `k`.
    pub(crate) fn mul_generator(k: &Scalar) -> Self {
        let table = g1_table();
        let mut limbs = k.limbs();
        let mut digits = booth_scalar(&limbs);
        limbs.zeroize();
        let mut acc = blst_p1::default(); // Z = 0: the point at infinity
        for (row, c) in table.iter().zip(digits.iter()) {
            let mut entry = g1_select(row, *c);
            let p: *mut blst_p1 = &mut acc;
            // SAFETY: `p` is valid for reads and writes (blst allows out == in); `entry` is a
            // valid affine point or all zeros, which blst reads as infinity. The addition is
            // complete (handles doubling and infinity) and branch-free.
            unsafe { blst_p1_add_or_double_affine(p, p, &entry) };
            entry.x.l.zeroize();
            entry.y.l.zeroize();
        }
        digits.zeroize();
        let mut out = blst_p1_affine::default();
        // SAFETY: valid out-pointer and input.
        unsafe { blst_p1_to_affine(&mut out, &acc) };
        Self(out)
    }

    /// `k * self` with blst's variable-base multiplication (the reference in tests).
    #[cfg(test)]
    pub(crate) fn mul(&self, k: &Scalar) -> Self {
        let mut p = blst_p1::default();
        let mut out = blst_p1_affine::default();
        // SAFETY: valid pointers; the scalar is 32 little-endian bytes and we pass 255 bits.
        unsafe {
            blst::blst_p1_from_affine(&mut p, &self.0);
            let q: *mut blst_p1 = &mut p;
            blst::blst_p1_mult(q, q, k.0.b.as_ptr(), SCALAR_BITS);
            blst_p1_to_affine(&mut out, &p);
        }
        Self(out)
    }

    /// A point on the curve (any subgroup) from its compressed bytes, unchecked: tests only.
    #[cfg(test)]
    pub(crate) fn uncompress_unchecked(bytes: &[u8; G1_LEN]) -> Option<Self> {
        let mut p = blst_p1_affine::default();
        // SAFETY: as in from_compressed.
        let err = unsafe { blst_p1_uncompress(&mut p, bytes.as_ptr()) };
        (err == BLST_ERROR::BLST_SUCCESS).then_some(Self(p))
    }
}

fn check_decode(err: BLST_ERROR, what: &'static str) -> Result<(), PreError> {
    match err {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        BLST_ERROR::BLST_POINT_NOT_ON_CURVE => Err(PreError::NotOnCurve { what }),
        BLST_ERROR::BLST_POINT_NOT_IN_GROUP => Err(PreError::NotInSubgroup { what }),
        _ => Err(PreError::Encoding { what }),
    }
}

/// Masked read of `row[|c| - 1]` (all zeros, i.e. infinity, if `c == 0`), negated if `c < 0`.
fn g1_select(row: &[blst_p1_affine; TABLE], c: i8) -> blst_p1_affine {
    let (abs, negative) = digit_parts(c);
    let mut out = blst_p1_affine::default();
    for (j, e) in (1u64..).zip(row) {
        let m = ct_eq_mask(abs, j);
        for (d, s) in out.x.l.iter_mut().zip(&e.x.l) {
            *d |= *s & m;
        }
        for (d, s) in out.y.l.iter_mut().zip(&e.y.l) {
            *d |= *s & m;
        }
    }
    let y: *mut blst_fp = &mut out.y;
    // SAFETY: `y` is valid for reads and writes; branch-free conditional negation in place.
    // A zero digit is never negative, so infinity stays all zeros.
    unsafe { blst_fp_cneg(y, y, negative) };
    out
}

/// `table[n][j - 1] = j * 2^(5n) * g1`, built once per process (52 * 16 points, 80 KB).
fn g1_table() -> &'static [[blst_p1_affine; TABLE]] {
    static TABLE_G1: OnceLock<Vec<[blst_p1_affine; TABLE]>> = OnceLock::new();
    TABLE_G1.get_or_init(|| {
        let mut proj = vec![blst_p1::default(); G1_WINDOWS * TABLE];
        // SAFETY: blst returns a pointer to its static, initialised generator.
        let mut base = unsafe { *blst_p1_generator() };
        for (n, row) in proj.chunks_exact_mut(TABLE).enumerate() {
            if n > 0 {
                for _ in 0..WINDOW {
                    let b: *mut blst_p1 = &mut base;
                    // SAFETY: in-place doubling of a valid point.
                    unsafe { blst_p1_double(b, b) };
                }
            }
            row[0] = base;
            for j in 1..TABLE {
                let prev = row[j - 1];
                // SAFETY: valid pointers; complete addition.
                unsafe { blst_p1_add_or_double(&mut row[j], &prev, &base) };
            }
        }
        let mut affine = vec![blst_p1_affine::default(); proj.len()];
        let points: [*const blst_p1; 2] = [proj.as_ptr(), core::ptr::null()];
        // SAFETY: `affine` and `proj` both hold `proj.len()` points; a null second pointer
        // tells blst that the input is one contiguous array.
        unsafe { blst_p1s_to_affine(affine.as_mut_ptr(), points.as_ptr(), proj.len()) };
        affine
            .chunks_exact(TABLE)
            .map(|c| {
                let mut row = [blst_p1_affine::default(); TABLE];
                row.copy_from_slice(c);
                row
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// G2 and pairings.

/// A point of G2: on the curve, in the order-r subgroup, not the identity.
#[derive(Clone)]
pub(crate) struct G2(blst_p2_affine);

impl PartialEq for G2 {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for G2 {}

impl G2 {
    pub(crate) fn generator() -> Self {
        // SAFETY: blst returns a pointer to its static, initialised generator.
        Self(unsafe { *blst_p2_affine_generator() })
    }

    pub(crate) fn from_compressed(
        bytes: &[u8; G2_LEN],
        what: &'static str,
    ) -> Result<Self, PreError> {
        let mut p = blst_p2_affine::default();
        // SAFETY: `p` is a valid out-pointer; blst reads exactly 96 bytes (the compression bit
        // is checked first).
        let err = unsafe { blst_p2_uncompress(&mut p, bytes.as_ptr()) };
        check_decode(err, what)?;
        // SAFETY: `p` is an initialised affine point.
        if unsafe { blst_p2_affine_is_inf(&p) } {
            return Err(PreError::Identity { what });
        }
        // SAFETY: as above.
        if !unsafe { blst_p2_affine_in_g2(&p) } {
            return Err(PreError::NotInSubgroup { what });
        }
        Ok(Self(p))
    }

    pub(crate) fn to_compressed(&self) -> [u8; G2_LEN] {
        let mut out = [0u8; G2_LEN];
        // SAFETY: `out` has the 96 bytes blst writes.
        unsafe { blst_p2_affine_compress(out.as_mut_ptr(), &self.0) };
        out
    }

    /// `k * self`: blst's constant-time GLS multiplication.
    pub(crate) fn mul(&self, k: &Scalar) -> Self {
        let mut p = blst_p2::default();
        let mut out = blst_p2_affine::default();
        // SAFETY: valid pointers; the scalar is 32 little-endian bytes and we pass 255 bits
        // (r < 2^255); blst allows the output to alias the input point.
        unsafe {
            blst_p2_from_affine(&mut p, &self.0);
            let q: *mut blst_p2 = &mut p;
            blst_p2_mult(q, q, k.0.b.as_ptr(), SCALAR_BITS);
            blst_p2_to_affine(&mut out, &p);
        }
        wipe_fp2s(&mut [&mut p.x, &mut p.y, &mut p.z]);
        Self(out)
    }

    pub(crate) fn wipe(&mut self) {
        wipe_fp2s(&mut [&mut self.0.x, &mut self.0.y]);
    }
}

fn wipe_fp2s(v: &mut [&mut blst::blst_fp2]) {
    for f2 in v.iter_mut() {
        for f in &mut f2.fp {
            f.l.zeroize();
        }
    }
}

/// Precomputed Miller-loop lines of a fixed G2 point (68 Fp6 values, 19.6 KB).
#[derive(Clone)]
pub(crate) struct Lines(Box<[blst_fp6; LINES]>);

impl Lines {
    pub(crate) fn new(q: &G2) -> Self {
        let mut lines = Box::new([blst_fp6::default(); LINES]);
        // SAFETY: `lines` holds the 68 Fp6 values blst writes; `q` is a valid affine point.
        unsafe { blst_precompute_lines(lines.as_mut_ptr(), &q.0) };
        Self(lines)
    }

    pub(crate) fn wipe(&mut self) {
        for f6 in self.0.iter_mut() {
            for f2 in &mut f6.fp2 {
                for f in &mut f2.fp {
                    f.l.zeroize();
                }
            }
        }
    }
}

/// `e(p, q)` where `lines` are those of `q`.
pub(crate) fn pairing(lines: &Lines, p: &G1) -> Gt {
    let mut ml = fp12_zero();
    let mut out = fp12_zero();
    // SAFETY: `lines` points to 68 Fp6 values; `p` is a valid affine point; out-pointers are
    // valid.
    unsafe {
        blst_miller_loop_lines(&mut ml, lines.0.as_ptr(), &p.0);
        blst_final_exp(&mut out, &ml);
    }
    fp12_wipe(&mut ml);
    Gt(out)
}

/// `e(p, q)` without precomputed lines.
pub(crate) fn pairing_plain(p: &G1, q: &G2) -> Gt {
    let mut ml = fp12_zero();
    let mut out = fp12_zero();
    // SAFETY: valid affine points and out-pointers.
    unsafe {
        blst_miller_loop(&mut ml, &q.0, &p.0);
        blst_final_exp(&mut out, &ml);
    }
    Gt(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booth_digits_recompose() {
        for d in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            U - 1,
            u64::MAX,
            0x5555_5555_5555_5555,
        ] {
            let digits = booth_u64(d);
            let mut acc: i128 = 0;
            for c in digits.iter().rev() {
                assert!((-16..=16).contains(c));
                acc = acc * 32 + i128::from(*c);
            }
            assert_eq!(acc, i128::from(d), "{d:#x}");
        }
    }

    #[test]
    fn ct_divrem_matches_integer_division() {
        let n = [
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0x1111_2222_3333_4444,
            0x7fff,
        ];
        let (q, r) = ct_divrem_u(&n, 256);
        // Check q * U + r == n with u128 limb arithmetic.
        let mut carry: u128 = u128::from(r);
        for i in 0..4 {
            let t = u128::from(q[i]) * u128::from(U) + carry;
            assert_eq!(t as u64, n[i]);
            carry = t >> 64;
        }
        assert_eq!(carry, 0);
        assert!(r < U);
    }

    #[test]
    fn sac_recoding_recomposes() {
        let cases = [
            [1u64, 0, 0, 0],
            [1, U - 1, U - 1, U - 1],
            [U - 1, 1, 2, 3],
            [
                0x8000_0000_0000_0001,
                u64::MAX,
                0x5555_5555_5555_5555,
                0xaaaa_aaaa_aaaa_aaaa,
            ],
            [3, 1 << 63, 0, 1],
        ];
        for d in cases {
            let r = sac_recode(&d);
            let (idx, neg) = &*r;
            for (j, dj) in d.iter().enumerate() {
                let mut acc: i128 = 0;
                for i in (0..SAC_LEN).rev() {
                    let sign = if neg[i] == 1 { -1 } else { 1 };
                    let present = j == 0 || (idx[i] >> (j - 1)) & 1 == 1;
                    acc = 2 * acc + if present { sign } else { 0 };
                }
                assert_eq!(acc, i128::from(*dj), "{d:x?} digit {j}");
            }
        }
    }

    #[test]
    fn digit_parts_is_abs_and_sign() {
        for c in -16i8..=16 {
            let (abs, neg) = digit_parts(c);
            assert_eq!(abs, u64::from(c.unsigned_abs()));
            assert_eq!(neg, c < 0);
        }
    }
}
