//! The one place that knows about Unix signals: it turns them into [`Message`]s. The rest of the
//! daemon (and its tests) deal in messages.

use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What an operator can ask of the running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// SIGHUP: re-read and validate the config; a bad one keeps the old one running.
    Reload,
    /// SIGUSR1: sweep now.
    Sweep,
    /// SIGUSR2: purge now, down to the low watermark even below the high one.
    Purge,
    /// SIGTERM, SIGINT: finish the unit in hand and exit.
    Shutdown,
}

/// Installs the handlers (before the daemon says it is ready, so no signal is lost to the
/// default action) and forwards each signal as a message.
pub fn forward(tx: mpsc::Sender<Message>) -> io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = hup.recv() => Message::Reload,
                _ = usr1.recv() => Message::Sweep,
                _ = usr2.recv() => Message::Purge,
                _ = term.recv() => Message::Shutdown,
                _ = int.recv() => Message::Shutdown,
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}
