//! Integration tests of tap-webhook through its real binary: the receiver over a real socket,
//! crash safety under SIGKILL, and the tap's runs chained by state.

mod harness;
mod hostile;
mod receiver;
mod tap;
