//! The front door: everything that faces MySQL clients. The listener accepts
//! and limits connections, `auth` checks logins, `wire` watches the raw byte
//! streams for what opensrv-mysql gets wrong, `shim` turns protocol callbacks
//! into session calls, and `results` turns backend results into packets.

pub mod auth;
pub mod listener;
pub mod results;
pub mod shim;
pub mod wire;
