//! Private mariadbd launcher. TODO
