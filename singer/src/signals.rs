//! SIGTERM and SIGINT as a request to stop cleanly, for the binaries' long runs: a following
//! tap (`tap-webhook --follow`) ends with its final STATE, and a target reading it ends at its
//! end of input, committing what it holds. A second signal ends the process at once, as the
//! default action would have: a kill both sides survive (the durability chain, BRIEF §2).

use std::io;

/// Exit status after a second signal: 128 + the signal's number, as shells report a kill.
const SIGINT_STATUS: i32 = 128 + 2;
const SIGTERM_STATUS: i32 = 128 + 15;

/// Installs handlers for SIGTERM and SIGINT (in place when this returns) and calls `on_first`
/// with the signal's name at the first one, on a thread of its own; a second one exits.
pub fn on_stop_signal(on_first: impl FnOnce(&'static str) + Send + 'static) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut on_first = Some(on_first);
            loop {
                let (name, status) = tokio::select! {
                    _ = term.recv() => ("SIGTERM", SIGTERM_STATUS),
                    _ = int.recv() => ("SIGINT", SIGINT_STATUS),
                };
                match on_first.take() {
                    Some(f) => f(name),
                    None => {
                        tracing::warn!("second stop signal ({name}): exiting now");
                        std::process::exit(status);
                    }
                }
            }
        })
    });
    Ok(())
}
