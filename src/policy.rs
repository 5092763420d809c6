//! A policy: what a proxy user may do, compiled from `policies/<name>.toml`.
//! Loaded and validated at start-up; the guard only reads it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A compiled, valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// `sql_read`: SELECT and the session statements drivers send on connect.
    pub sql_read: bool,
    /// `sql_write`: INSERT and UPDATE.
    pub sql_write: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy name {0:?} must be a file stem in policies/ (letters, digits, _ or -)")]
    BadName(String),
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    capabilities: Vec<String>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Policy::from_toml(&name, &text).map_err(|problem| PolicyError::Invalid {
            path: path.to_path_buf(),
            problem,
        })
    }

    pub fn from_toml(name: &str, text: &str) -> Result<Policy, String> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| e.message().trim().to_string())?;
        let mut policy = Policy {
            name: name.to_string(),
            sql_read: false,
            sql_write: false,
        };
        for capability in &raw.capabilities {
            match capability.as_str() {
                "sql_read" => policy.sql_read = true,
                "sql_write" => policy.sql_write = true,
                other => {
                    return Err(format!(
                        "capabilities: unknown capability {other:?} (known: sql_read, sql_write)"
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// A policy with every capability, for unit tests of the guard.
    pub fn read_write(name: &str) -> Policy {
        Policy {
            name: name.to_string(),
            sql_read: true,
            sql_write: true,
        }
    }
}
