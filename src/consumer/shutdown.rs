//! Turns SIGTERM (Kubernetes) and ctrl-c (a terminal) into a cancellation token.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or ctrl-c. A second ctrl-c is left to the default handler
/// only after the process has exited; operators who need an immediate stop use SIGKILL.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining in-flight messages");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops this process gracefully");
            wait_for_ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    wait_for_ctrl_c().await;
}

async fn wait_for_ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        // Without a handler there is no signal to wait for; never shutting down beats shutting down now.
        tracing::warn!(%error, "cannot listen for ctrl-c either; stop this process with SIGKILL");
        std::future::pending::<()>().await;
    }
}
