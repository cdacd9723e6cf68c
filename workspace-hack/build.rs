//! Empty: a build script makes cargo honour this crate's build-dependencies, which unify the
//! features of the build scripts' and proc-macros' dependencies too.
fn main() {}
