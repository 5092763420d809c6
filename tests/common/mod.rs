//! Shared integration-test harness: a private MariaDB per test binary and a
//! sqlguard proxy per test. Not every test binary uses every helper.
#![allow(dead_code)]

pub mod isolation;
pub mod mariadb;
pub mod proxy;
