//! The backend. TODO
