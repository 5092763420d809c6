//! One client connection's state. TODO
