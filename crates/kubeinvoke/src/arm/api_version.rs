//! Which `api-version` values the server accepts.
//!
//! Lenient by default: any well-formed `YYYY-MM-DD[-preview]`, and for Microsoft.ContainerService
//! only from 2021-03-01 on (when runCommand appeared). Strict mode pins Microsoft.ContainerService
//! to a fixed list; the Resources helpers az needs for login stay lenient.

use super::ApiError;
use super::path::Namespace;

/// The first api-version that has runCommand.
pub(crate) const FIRST_RUN_COMMAND_VERSION: &str = "2021-03-01";

/// Stable Microsoft.ContainerService versions known to have runCommand, plus what current clients send.
pub(crate) const KNOWN_CONTAINER_SERVICE_VERSIONS: &[&str] = &[
    "2021-03-01",
    "2021-05-01",
    "2021-07-01",
    "2021-08-01",
    "2021-09-01",
    "2021-10-01",
    "2022-01-01",
    "2022-02-01",
    "2022-03-01",
    "2022-04-01",
    "2022-06-01",
    "2022-07-01",
    "2022-09-01",
    "2022-11-01",
    "2023-01-01",
    "2023-02-01",
    "2023-03-01",
    "2023-04-01",
    "2023-05-01",
    "2023-06-01",
    "2023-07-01",
    "2023-08-01",
    "2023-09-01",
    "2023-10-01",
    "2023-11-01",
    "2024-01-01",
    "2024-02-01",
    "2024-05-01",
    "2024-07-01",
    "2024-08-01",
    "2024-09-01",
    "2024-10-01",
    "2025-01-01",
    "2025-02-01",
    "2025-03-01",
    "2025-04-01",
    "2025-05-01",
    "2025-06-01",
    "2025-07-01",
    "2025-08-01",
    "2025-09-01",
    "2025-10-01",
    "2026-01-01",
    "2026-02-01",
    "2026-06-01",
];

#[derive(Debug, Clone, Default)]
pub enum ApiVersionPolicy {
    #[default]
    Lenient,
    /// Only these versions for Microsoft.ContainerService.
    Strict(Vec<String>),
}

impl ApiVersionPolicy {
    pub fn check(&self, namespace: Namespace, given: Option<&str>) -> Result<(), ApiError> {
        let Some(version) = given else {
            return match namespace {
                Namespace::Metadata => Ok(()),
                _ => Err(ApiError::MissingApiVersion),
            };
        };
        let Some(date) = well_formed_date(version) else {
            return Err(self.refuse(namespace, version));
        };
        let accepted = match (namespace, self) {
            (Namespace::ContainerService, ApiVersionPolicy::Strict(list)) => list.iter().any(|v| v == version),
            (Namespace::ContainerService, ApiVersionPolicy::Lenient) => date >= FIRST_RUN_COMMAND_VERSION,
            _ => true,
        };
        if accepted { Ok(()) } else { Err(self.refuse(namespace, version)) }
    }

    fn refuse(&self, namespace: Namespace, given: &str) -> ApiError {
        let supported = match (namespace, self) {
            (Namespace::ContainerService, ApiVersionPolicy::Strict(list)) => {
                format!("'{}'", list.join("', '"))
            }
            (Namespace::ContainerService, ApiVersionPolicy::Lenient) => {
                format!("any 'YYYY-MM-DD' or 'YYYY-MM-DD-preview' from '{FIRST_RUN_COMMAND_VERSION}' on")
            }
            _ => "any 'YYYY-MM-DD' or 'YYYY-MM-DD-preview'".to_string(),
        };
        ApiError::InvalidApiVersion { given: given.to_string(), supported }
    }
}

/// Returns the `YYYY-MM-DD` part of a well-formed version, which compares correctly as a string.
fn well_formed_date(version: &str) -> Option<&str> {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return None;
    }
    let month: u8 = date[5..7].parse().ok()?;
    let day: u8 = date[8..10].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_accepts_new_and_preview_versions() {
        let p = ApiVersionPolicy::Lenient;
        for v in ["2021-03-01", "2026-06-01", "2031-12-31-preview", "2024-09-02-preview"] {
            assert!(p.check(Namespace::ContainerService, Some(v)).is_ok(), "{v}");
        }
        for v in ["2021-02-01", "2026-13-01", "latest", "2024-9-1", "2024-09-01-beta", ""] {
            assert!(p.check(Namespace::ContainerService, Some(v)).is_err(), "{v}");
        }
        assert!(p.check(Namespace::Resources, Some("2016-06-01")).is_ok());
        assert!(matches!(p.check(Namespace::Resources, None), Err(ApiError::MissingApiVersion)));
        assert!(p.check(Namespace::Metadata, None).is_ok());
    }

    #[test]
    fn strict_pins_container_service_only() {
        let p = ApiVersionPolicy::Strict(vec!["2024-09-01".into()]);
        assert!(p.check(Namespace::ContainerService, Some("2024-09-01")).is_ok());
        let err = p.check(Namespace::ContainerService, Some("2026-06-01")).unwrap_err();
        assert!(err.to_string().contains("'2024-09-01'"), "{err}");
        assert!(p.check(Namespace::Resources, Some("2022-12-01")).is_ok());
    }
}
