//! Validated ARM names. Each type parses once, at the edge, and is trusted afterwards.

use std::fmt;

/// A name that is not valid where it was given; the wire layer turns it into its CloudError.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("the subscription id '{0}' is not a UUID")]
    Subscription(String),
    #[error("the resource group name '{0}' is invalid")]
    ResourceGroup(String),
    #[error("the resource name '{0}' is invalid")]
    Resource(String),
}

/// A subscription id: a UUID, kept in its canonical lowercase hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubscriptionId(String);

impl SubscriptionId {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let id = uuid::Uuid::try_parse(raw)
            .ok()
            .filter(|_| raw.len() == 36)
            .ok_or_else(|| InvalidName::Subscription(raw.to_string()))?;
        Ok(SubscriptionId(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `s` lowercased, borrowed when it already is (ids in tokens and paths usually are).
pub fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

/// A resource group name: 1–90 of `[-\w._()]`, not ending in `.`. Compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')');
        let length = raw.chars().count();
        if (1..=90).contains(&length) && raw.chars().all(allowed) && !raw.ends_with('.') {
            Ok(GroupName(raw.to_string()))
        } else {
            Err(InvalidName::ResourceGroup(raw.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup key: names match case-insensitively but keep the casing they were created with.
    pub fn key(&self) -> String {
        lowercase(&self.0).into_owned()
    }
}

/// A managed cluster name: `^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let bytes = raw.as_bytes();
        let inner_ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        let valid = match bytes {
            [] => false,
            [only] => only.is_ascii_alphanumeric(),
            [first, middle @ .., last] => {
                bytes.len() <= 63
                    && first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && middle.iter().all(inner_ok)
            }
        };
        if valid { Ok(ClusterName(raw.to_string())) } else { Err(InvalidName::Resource(raw.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        lowercase(&self.0).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_uuids() {
        let id = SubscriptionId::parse("8E1D9B8B-2C65-4A1B-9F3C-5A6B7C8D9E0F").unwrap();
        assert_eq!(id.as_str(), "8e1d9b8b-2c65-4a1b-9f3c-5a6b7c8d9e0f");
        for bad in ["", "abc", "8e1d9b8b2c654a1b9f3c5a6b7c8d9e0f", "{8e1d9b8b-2c65-4a1b-9f3c-5a6b7c8d9e0f}"] {
            assert!(SubscriptionId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn group_names_follow_arm_rules() {
        for good in ["rg", "My.Group_(1)-x", "ü-gruppe", &"a".repeat(90)] {
            assert!(GroupName::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "ends.", "has space", "slash/", &"a".repeat(91), "semi;colon"] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cluster_names_follow_the_spec_pattern() {
        for good in ["a", "Z9", "my-cluster_1", &"a".repeat(63)] {
            assert!(ClusterName::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "-a", "a-", "_", "a.b", &"a".repeat(64), "ü"] {
            assert!(ClusterName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
