//! The ids this installation reports: its default subscription and its tenant.

use std::fs;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub subscription_id: String,
    pub tenant_id: String,
}

impl Instance {
    /// Flags win; otherwise the ids generated at the data directory's first start, kept in `instance.json`.
    pub fn load_or_create(config: &ServerConfig) -> anyhow::Result<Self> {
        let path = config.data_dir.join("instance.json");
        let stored: Option<Instance> = match fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let fresh = || uuid::Uuid::new_v4().to_string();
        let instance = Instance {
            subscription_id: canonical_uuid("--subscription-id", config.subscription_id.clone())?
                .or_else(|| stored.as_ref().map(|s| s.subscription_id.clone()))
                .unwrap_or_else(fresh),
            tenant_id: canonical_uuid("--tenant-id", config.tenant_id.clone())?
                .or_else(|| stored.as_ref().map(|s| s.tenant_id.clone()))
                .unwrap_or_else(fresh),
        };
        if stored.is_none() {
            fs::write(&path, serde_json::to_vec_pretty(&instance)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(instance)
    }
}

fn canonical_uuid(flag: &str, value: Option<String>) -> anyhow::Result<Option<String>> {
    value
        .map(|v| {
            uuid::Uuid::try_parse(&v)
                .map(|id| id.hyphenated().to_string())
                .with_context(|| format!("{flag} {v:?} is not a UUID"))
        })
        .transpose()
}
