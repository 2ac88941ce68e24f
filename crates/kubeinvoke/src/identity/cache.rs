//! Tokens that passed full validation, so a client polling with the same token pays for the RSA
//! signature check once, not on every request (it was 40% of a result read's CPU).
//!
//! Keyed by the token itself (compared whole, so one token never finds another's claims), hashed
//! with `foldhash` (a SHA-256 of the token per request showed in the read profile), then by the
//! audiences it was checked for. A hit is still checked against the clock (`exp`/`nbf` with the
//! leeway), so a cached token expires exactly when an uncached one would. Refusals are never
//! cached. Bounded: when full, expired entries go first, then everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::tokens::{Claims, LEEWAY_SECONDS};

const CAPACITY: usize = 10_000;

/// The claims of one token, per set of audiences it was validated for.
type ByAudiences = Vec<(Box<[Box<str>]>, Arc<Claims>)>;

#[derive(Default)]
pub(super) struct ValidatedTokens {
    entries: Mutex<HashMap<Box<str>, ByAudiences, foldhash::fast::RandomState>>,
}

impl ValidatedTokens {
    /// The claims of a token validated before for these audiences, if still within its lifetime.
    pub(super) fn get(&self, token: &str, audiences: &[&str], now_secs: i64) -> Option<Arc<Claims>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (_, claims) = entries.get(token)?.iter().find(|(checked, _)| same(checked, audiences))?;
        within_lifetime(claims, now_secs).then(|| claims.clone())
    }

    pub(super) fn insert(&self, token: &str, audiences: &[&str], claims: &Arc<Claims>, now_secs: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, all| {
                all.retain(|(_, c)| within_lifetime(c, now_secs));
                !all.is_empty()
            });
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        let all = entries.entry(token.into()).or_default();
        all.retain(|(checked, _)| !same(checked, audiences));
        all.push((audiences.iter().map(|a| Box::from(*a)).collect(), claims.clone()));
    }
}

fn same(checked: &[Box<str>], audiences: &[&str]) -> bool {
    checked.len() == audiences.len() && checked.iter().zip(audiences).all(|(a, b)| **a == **b)
}

fn within_lifetime(claims: &Claims, now_secs: i64) -> bool {
    let leeway = LEEWAY_SECONDS as i64;
    claims.exp + leeway > now_secs && claims.nbf - leeway <= now_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(nbf: i64, exp: i64) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "a".into(),
            tid: "t".into(),
            oid: "o".into(),
            appid: None,
            azp: None,
            sub: "s".into(),
            iat: nbf,
            nbf,
            exp,
            ver: None,
        }
    }

    #[test]
    fn hits_only_for_the_same_token_and_audiences_within_the_lifetime() {
        let cache = ValidatedTokens::default();
        cache.insert("token", &["arm"], &Arc::new(claims(1000, 2000)), 1500);
        assert!(cache.get("token", &["arm"], 1500).is_some());
        assert!(cache.get("token", &["cluster"], 1500).is_none(), "other audiences validate anew");
        assert!(cache.get("other", &["arm"], 1500).is_none());
        let leeway = LEEWAY_SECONDS as i64;
        assert!(cache.get("token", &["arm"], 2000 + leeway - 1).is_some());
        assert!(cache.get("token", &["arm"], 2000 + leeway).is_none(), "expires as an uncached token would");
        assert!(cache.get("token", &["arm"], 1000 - leeway - 1).is_none(), "not yet valid");
    }

    #[test]
    fn stays_bounded() {
        let cache = ValidatedTokens::default();
        for n in 0..CAPACITY + 10 {
            cache.insert(&n.to_string(), &["arm"], &Arc::new(claims(0, 100)), 50);
        }
        assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
    }
}
