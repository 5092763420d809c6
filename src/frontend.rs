//! The front door: everything that faces MySQL clients. The listener accepts
//! and limits connections, `auth` checks logins, `wire` watches the raw byte
//! streams for what opensrv-mysql gets wrong, `shim` turns protocol callbacks
//! into session calls, `results` runs a statement and streams its result, and
//! `packets` writes those responses in MariaDB's exact format. `socket` is the
//! client's connection, plain or TLS.

pub mod auth;
pub mod binary;
pub mod listener;
pub mod packets;
pub mod results;
pub mod shim;
pub mod socket;
pub mod wire;
