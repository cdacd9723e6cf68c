//! No code: this crate exists for its dependencies, which give every build of the workspace
//! one feature set (see its Cargo.toml).
