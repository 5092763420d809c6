//! The users, policies and limits in force (a [`Catalog`]) and their live
//! reload: SIGHUP re-reads proxy.toml and policies/, validates everything,
//! and swaps the whole catalog at once, or keeps the old one on any problem.
//! Sessions compare one atomic generation per statement and switch there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{self, Config, ConfigSource, LimitsConfig, UserConfig};
use crate::limits::Counters;

/// One consistent set of users, policies and limits.
#[derive(Debug)]
pub struct Catalog {
    /// 1 at start-up, +1 per successful reload. A cache keyed on decisions
    /// (guard results) must include it, or key on the policy `Arc`'s identity.
    pub generation: u64,
    pub users: HashMap<String, Arc<UserConfig>>,
    pub limits: LimitsConfig,
}

impl Catalog {
    fn new(generation: u64, config: &Config) -> Self {
        Catalog {
            generation,
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), Arc::new(u.clone())))
                .collect(),
            limits: config.limits,
        }
    }
}

/// What a successful reload changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub generation: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Users whose policy, tenant, password or limits changed.
    pub changed: Vec<String>,
    /// The file also changed sections a reload does not apply (listen,
    /// backend, audit, metrics, log, cache): they need a restart.
    pub restart_needed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("nothing to reload: this proxy's configuration was not read from a file")]
    NoSource,
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// The current [`Catalog`], swapped whole by [`Registry::reload`].
pub struct Registry {
    current: RwLock<Arc<Catalog>>,
    /// Equal to `current.generation`; read without the lock on every statement.
    generation: AtomicU64,
    source: Option<ConfigSource>,
    /// The sections a reload does not apply, as loaded at start-up (Debug
    /// text; the backend password is redacted in it).
    fixed: String,
    /// One reload at a time (two SIGHUPs in a row must not interleave).
    reloading: Mutex<()>,
    /// Per-user connection, concurrency and rate counters (not reloaded).
    pub counters: Counters,
}

impl Registry {
    pub fn new(config: &Config) -> Self {
        Registry {
            current: RwLock::new(Arc::new(Catalog::new(1, config))),
            generation: AtomicU64::new(1),
            source: config.source.clone(),
            fixed: fixed_sections(config),
            reloading: Mutex::new(()),
            counters: Counters::default(),
        }
    }

    /// The generation in force: one atomic load, for the per-statement check.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Catalog> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the config file and its policies. On any problem the old
    /// catalog keeps serving and the error is returned.
    /// Only `[[users]]`, policies and `[limits]` are reloaded; the other
    /// sections (addresses, backend, audit path) need a restart.
    pub fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let _one = match self.reloading.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.try_reload()
    }

    fn try_reload(&self) -> Result<ReloadSummary, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let config = config::load(&source.path, &source.overrides)?;
        let old = self.current();
        let new = Catalog::new(old.generation + 1, &config);
        let mut summary = summarize(&old, &new);
        summary.restart_needed = fixed_sections(&config) != self.fixed;
        match self.current.write() {
            Ok(mut slot) => *slot = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
        self.generation.store(summary.generation, Ordering::Release);
        Ok(summary)
    }
}

fn fixed_sections(config: &Config) -> String {
    format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}",
        config.listen, config.backend, config.audit, config.metrics, config.log, config.cache
    )
}

fn summarize(old: &Catalog, new: &Catalog) -> ReloadSummary {
    let mut added: Vec<String> = new
        .users
        .keys()
        .filter(|u| !old.users.contains_key(*u))
        .cloned()
        .collect();
    let mut removed: Vec<String> = old
        .users
        .keys()
        .filter(|u| !new.users.contains_key(*u))
        .cloned()
        .collect();
    let mut changed: Vec<String> = new
        .users
        .iter()
        .filter(|(name, user)| {
            old.users.get(*name).is_some_and(|o| {
                o.policy_version != user.policy_version
                    || o.tenant_id != user.tenant_id
                    || o.password_hash != user.password_hash
                    || o.limits != user.limits
            })
        })
        .map(|(name, _)| name.clone())
        .collect();
    added.sort();
    removed.sort();
    changed.sort();
    ReloadSummary {
        generation: new.generation,
        added,
        removed,
        changed,
        restart_needed: false,
    }
}
