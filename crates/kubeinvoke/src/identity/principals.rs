//! Service principals: an app id, an object id and a secret stored only as a salted hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::PrincipalRecord;
use crate::time::now_millis;

/// A principal just created, with the only copy of its secret.
pub(crate) struct NewPrincipal {
    pub record: PrincipalRecord,
    pub secret: String,
}

pub(crate) fn new_principal(display_name: &str) -> NewPrincipal {
    let mut secret_bytes = [0u8; 30];
    rand::thread_rng().fill_bytes(&mut secret_bytes);
    // A letter first: the az CLI reads a password starting with '-' as an option.
    let secret = format!("K{}", URL_SAFE_NO_PAD.encode(secret_bytes));
    let mut salt = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let secret_hash = hash(&salt, &secret);
    NewPrincipal {
        record: PrincipalRecord {
            app_id: uuid::Uuid::new_v4().to_string(),
            object_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.to_string(),
            secret_salt: salt,
            secret_hash,
            created_at: now_millis(),
        },
        secret,
    }
}

/// Secrets are 240 random bits, so one salted SHA-256 is enough: there is nothing to brute-force.
fn hash(salt: &[u8], secret: &str) -> Vec<u8> {
    let mut digest = Sha256::new();
    digest.update(salt);
    digest.update(secret.as_bytes());
    digest.finalize().to_vec()
}

/// Compares in constant time, so response timing reveals nothing about the stored hash.
pub(crate) fn secret_matches(record: &PrincipalRecord, secret: &str) -> bool {
    let candidate = hash(&record.secret_salt, secret);
    candidate.len() == record.secret_hash.len()
        && candidate.iter().zip(&record.secret_hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_issued_secret_matches() {
        let created = new_principal("ci");
        assert!(secret_matches(&created.record, &created.secret));
        assert!(!secret_matches(&created.record, "wrong"));
        assert!(!secret_matches(&created.record, &created.secret[1..]));
        assert_ne!(created.record.secret_hash, created.secret.as_bytes());
        assert!(created.secret.starts_with(|c: char| c.is_ascii_alphanumeric()));
    }
}
