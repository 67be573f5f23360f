//! SIGINT and SIGTERM: the first asks the pipeline to stop (stages flush and commit within
//! `pipeline.shutdown_timeout_ms`); a second one ends the process at once, without
//! committing, with exit code 130.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit code after a second signal: 128 + SIGINT, as shells report an interrupted program.
pub const EXIT_SECOND_SIGNAL: u8 = 130;

/// A token cancelled on the first SIGINT or SIGTERM; the second exits the process.
pub fn shutdown_request() -> CancellationToken {
    let token = CancellationToken::new();
    let request = token.clone();
    tokio::spawn(async move {
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGINT and SIGTERM; stop with SIGKILL");
                return;
            }
        };
        for count in 1.. {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if count == 1 {
                tracing::info!(
                    signal = name,
                    "stopping: flushing and committing (a second signal stops at once)"
                );
                request.cancel();
            } else {
                eprintln!("chainflow: {name} again: stopping at once, without committing");
                std::process::exit(i32::from(EXIT_SECOND_SIGNAL));
            }
        }
    });
    token
}
