//! Tokens that passed full validation, so a client polling with the same token pays for the RSA
//! signature check once, not on every request (it was 40% of a result read's CPU).
//!
//! Keyed by a SHA-256 of the token and the audiences it was checked for; a hit is still checked
//! against the clock (`exp`/`nbf` with the leeway), so a cached token expires exactly when an
//! uncached one would. Refusals are never cached. Bounded: when full, expired entries go first,
//! then everything.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::tokens::{Claims, LEEWAY_SECONDS};

const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct ValidatedTokens {
    entries: Mutex<HashMap<[u8; 32], Claims>>,
}

impl ValidatedTokens {
    /// The claims of a token validated before for these audiences, if still within its lifetime.
    pub fn get(&self, token: &str, audiences: &[&str], now_secs: i64) -> Option<Claims> {
        let key = key(token, audiences);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&key).filter(|claims| within_lifetime(claims, now_secs)).cloned()
    }

    pub fn insert(&self, token: &str, audiences: &[&str], claims: &Claims, now_secs: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, c| within_lifetime(c, now_secs));
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key(token, audiences), claims.clone());
    }
}

fn within_lifetime(claims: &Claims, now_secs: i64) -> bool {
    let leeway = LEEWAY_SECONDS as i64;
    claims.exp + leeway > now_secs && claims.nbf - leeway <= now_secs
}

fn key(token: &str, audiences: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    for audience in audiences {
        hash.update([0]);
        hash.update(audience.as_bytes());
    }
    hash.finalize().into()
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
        cache.insert("token", &["arm"], &claims(1000, 2000), 1500);
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
            cache.insert(&n.to_string(), &["arm"], &claims(0, 100), 50);
        }
        assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
    }
}
