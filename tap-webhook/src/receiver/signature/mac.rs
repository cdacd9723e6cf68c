//! What every signature scheme shares: the HMAC itself, the header lookup, the timestamp
//! tolerance, and the constant-time verdict over every (expected, given) pair.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::receiver::auth::{AuthError, RequestView};

/// Standard Webhooks' and Stripe's default replay window.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

pub fn hmac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            // HMAC accepts keys of any length; new_from_slice cannot fail.
            let mut mac = match <Hmac<$d> as Mac>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => return Vec::new(),
            };
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(Sha256),
        Algorithm::Sha512 => run!(Sha512),
    }
}

pub fn header_value<'a>(req: &'a RequestView<'_>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| req.headers.get(*n)?.to_str().ok())
        .map(str::trim)
}

pub fn check_timestamp(ts: &str, now: i64, tolerance: i64) -> Result<i64, AuthError> {
    let t: i64 = ts.trim().parse().map_err(|_| {
        AuthError::InvalidSignature(format!("timestamp {ts:?} is not Unix seconds"))
    })?;
    // Checked: a hostile header such as i64::MIN overflows `now - t` (and `abs` of i64::MIN),
    // which would panic in a debug build and wrap to "in tolerance" in a release one.
    match now.checked_sub(t).and_then(i64::checked_abs) {
        Some(skew) if skew <= tolerance => Ok(t),
        Some(_) => Err(AuthError::TimestampOutOfTolerance(format!(
            "timestamp is {}s from now; at most {tolerance}s is accepted",
            now - t
        ))),
        None => Err(AuthError::TimestampOutOfTolerance(format!(
            "timestamp {t} is too far from now; at most {tolerance}s is accepted"
        ))),
    }
}

/// Accepts when any given signature equals any expected one (one per secret), comparing every
/// pair in constant time so the rotation list leaks nothing by timing.
pub fn verdict(expected: &[Vec<u8>], given: &[Vec<u8>]) -> Result<(), AuthError> {
    let mut found = false;
    for e in expected {
        for g in given {
            found |= bool::from(e.as_slice().ct_eq(g.as_slice()));
        }
    }
    if found {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature("no signature matches".into()))
    }
}
