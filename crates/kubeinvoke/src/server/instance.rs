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

impl Instance {
    /// Replicas sharing a store report the ids of the first replica that started, so tokens and
    /// resource ids agree whichever replica answers. Ids given by flags still win.
    pub async fn agree(self, config: &ServerConfig, store: &dyn crate::store::Store) -> anyhow::Result<Self> {
        if !store.is_shared() {
            return Ok(self);
        }
        let stored = store.settings().init_setting("instance", serde_json::to_vec(&self)?).await?;
        let shared: Instance = serde_json::from_slice(&stored).context("the stored instance ids are corrupt")?;
        let agreed = Instance {
            subscription_id: if config.subscription_id.is_some() {
                self.subscription_id
            } else {
                shared.subscription_id
            },
            tenant_id: if config.tenant_id.is_some() { self.tenant_id } else { shared.tenant_id },
        };
        // The local copy says what this replica reports, for the tools that read it.
        let path = config.data_dir.join("instance.json");
        fs::write(&path, serde_json::to_vec_pretty(&agreed)?).with_context(|| format!("writing {}", path.display()))?;
        Ok(agreed)
    }
}

/// This process's id among replicas, kept in the data directory so a restarted replica knows
/// which running commands were its own.
pub(super) fn replica_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica-id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
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
