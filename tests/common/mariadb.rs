//! The MariaDB fixture for integration tests: a private `mariadbd` per test
//! (see `sqlguard::mariadb`) loaded with `fixtures/demo.sql`.
#![allow(dead_code)] // each test binary uses a different subset

use sqlguard::mariadb::{BACKEND_USER, DEMO_DATABASE, PrivateMariaDb};

/// The backend account's password in tests (`sqlguard`@`127.0.0.1`).
pub const BACKEND_PASSWORD: &str = "backend-test-pw";

/// Starts a private MariaDB and loads the demo schema and data. Panics with the
/// launcher's message (which says how to install MariaDB if it is missing):
/// tests that need the database fail, they never skip.
pub async fn start_fixture() -> PrivateMariaDb {
    let db = PrivateMariaDb::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a private MariaDB: {e}"));
    db.load_demo(BACKEND_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("cannot load the demo fixture: {e}"));
    db
}

/// [`start_fixture`] with extra `mariadbd` options (e.g. TLS certificates).
pub async fn start_fixture_with_args(args: Vec<String>) -> PrivateMariaDb {
    let db = PrivateMariaDb::start_with_args(args)
        .await
        .unwrap_or_else(|e| panic!("cannot start a private MariaDB: {e}"));
    db.load_demo(BACKEND_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("cannot load the demo fixture: {e}"));
    db
}

/// Direct connection options: `root` over TCP, default database `shop`.
pub fn direct_opts(db: &PrivateMariaDb) -> mysql_async::Opts {
    db.root_opts(Some(DEMO_DATABASE))
}

/// Connection options for the backend account the proxy uses, database `shop`.
pub fn backend_opts(db: &PrivateMariaDb) -> mysql_async::Opts {
    backend_opts_at(db.port())
}

/// Backend-account options for a MariaDB known only by its port.
pub fn backend_opts_at(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(BACKEND_USER))
        .pass(Some(BACKEND_PASSWORD))
        .db_name(Some(DEMO_DATABASE))
        .prefer_socket(false)
        .into()
}

/// The backend URL for a proxy config (password supplied separately).
pub fn backend_url(db: &PrivateMariaDb) -> String {
    format!(
        "mysql://{BACKEND_USER}@127.0.0.1:{}/{DEMO_DATABASE}",
        db.port()
    )
}

/// Demo product ids (UUIDs) of tenant 1, "Demo Store Maroc".
pub mod t1 {
    /// Écouteurs Bluetooth AirSound Pro, 299.00, stock 25, active.
    pub const PRODUCT_EARBUDS: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c1001";
    /// Montre connectée FitMaroc X2, 549.00, stock 12, active.
    pub const PRODUCT_WATCH: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c1002";
    /// Chargeur rapide USB-C 65W, 149.00, stock 0 (rupture de stock).
    pub const PRODUCT_OUT_OF_STOCK: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c1003";
    /// Enceinte portable BassBox, status 'draft'.
    pub const PRODUCT_DRAFT: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c1007";
    /// Order 'En attente' of customer 1.
    pub const ORDER_PENDING: &str = "6ec0bd7f-11c0-43da-975e-2a8ad9eb1001";
    /// Conversation ids: 1 and 3 active, 2 and 4 closed.
    pub const CONVERSATION_ACTIVE: i64 = 1;
    pub const CONVERSATION_CLOSED: i64 = 2;
    /// Customer 1, phone +212612345678.
    pub const CUSTOMER_PHONE: &str = "+212612345678";
}

/// Demo ids of tenant 2, "Atlas Souk".
pub mod t2 {
    /// Tapis berbère Beni Ouarain 200x300, 3500.00, stock 3, active.
    pub const PRODUCT_RUG: &str = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2001";
    /// Babouches en cuir jaune de Fès, 180.00, stock 50, active.
    pub const PRODUCT_BABOUCHES: &str = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2002";
    /// Huile d'argan bio 100 ml, 120.00, stock 0 (rupture de stock).
    pub const PRODUCT_OUT_OF_STOCK: &str = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2003";
    /// Lanterne en cuivre ciselé, status 'draft'.
    pub const PRODUCT_DRAFT: &str = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2006";
    /// Order 'En attente' of customer 8.
    pub const ORDER_PENDING: &str = "8f14e45f-ceea-467f-a8f2-1e2b5c3d2002";
    /// Conversation ids: 5 and 7 active, 6 and 8 closed.
    pub const CONVERSATION_ACTIVE: i64 = 5;
    pub const CONVERSATION_CLOSED: i64 = 6;
    /// Customer 6, phone +212600112233.
    pub const CUSTOMER_PHONE: &str = "+212600112233";
}
