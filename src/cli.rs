//! CLI. TODO
