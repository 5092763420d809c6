//! Private mariadbd launcher (stub until the harness branch lands).

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("mariadbd not found: install it with: apt-get install mariadb-server")]
    NotInstalled,
}

pub struct PrivateMariaDb;

impl PrivateMariaDb {
    pub async fn start() -> Result<PrivateMariaDb, LaunchError> {
        Err(LaunchError::NotInstalled)
    }
    pub fn port(&self) -> u16 {
        0
    }
    pub async fn load_demo(&self, _backend_password: &str) -> Result<(), LaunchError> {
        Ok(())
    }
}
