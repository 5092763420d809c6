//! Errors. TODO
