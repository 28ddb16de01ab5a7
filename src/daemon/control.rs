//! Serves the control socket ([`crate::control`]): reads one bounded request per connection and
//! hands it to the daemon's loop, which owns the state the answer is made of. Every read and
//! write is bounded in time and the connections served at once in number: a client that asks and
//! never reads is dropped (counted in `shuffle_janitor_control_clients_dropped_total`, logged)
//! and holds neither the loop nor a slot for long.

use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use prometheus::IntCounter;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::control::{ANSWER_STALL, ANSWER_TIMEOUT, MAX_REQUEST, REQUEST_TIMEOUT, Request, parse};

/// A request for the loop, with where its answer goes.
pub type Asked = (Request, oneshot::Sender<Answer>);

/// The loop's answer to a request.
pub enum Answer {
    /// One JSON line.
    Value(Value),
    /// An answer too long to hold (a plan): made and written on a blocking thread, as it goes, to
    /// the connection given; returns the first error writing met.
    Stream(Box<dyn FnOnce(Box<dyn Write + Send>) -> Option<io::Error> + Send>),
}

/// How long a streamed answer may take to be read in all (a plan of a million files); a client
/// that stops reading is dropped after [`ANSWER_STALL`] all the same.
pub const STREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Connections served at once; more wait for their turn (each is read-only, and bounded in time
/// by [`REQUEST_TIMEOUT`], [`ANSWER_TIMEOUT`] and [`ANSWER_STALL`]).
const CONNECTIONS: usize = 8;

/// Listens on `path` (0600) and forwards requests to `tx`. Refuses to take over a socket another
/// daemon answers on; a stale one (a daemon that died) is replaced. The socket is made under a
/// temporary name in a directory only the owner can enter, restricted to the owner, then renamed
/// into place: never reachable by others, even for an instant. `dropped` counts the clients
/// dropped for being too slow.
pub fn spawn(path: &Path, tx: mpsc::Sender<Asked>, dropped: IntCounter) -> io::Result<()> {
    // `sun_path`: 107 bytes and a NUL. A longer path can be neither bound nor connected to.
    let len = path.as_os_str().len();
    if len > 107 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("its path is {len} bytes long, and a socket's can be 107 at most: set a shorter control_socket"),
        ));
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another daemon answers on it (give this one another control_socket)",
            ));
        }
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something that is not a socket is in its place: remove it, or set another control_socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Bound inside a directory of its own (0700): under a name in the socket's own directory,
    // it was reachable between bind and chmod when the umask let others write to it, and a
    // connection made then outlives the chmod.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = tempfile::Builder::new().prefix(".control.").tempdir_in(parent)?;
    let tmp = private.path().join("socket");
    // Bound through the directory's fd: its own path is 16 bytes longer than the socket's (more
    // for a short name), and did not fit `sun_path` when the socket's path did.
    let dir = rustix::fs::open(
        private.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = format!("/proc/self/fd/{}/socket", std::os::fd::AsRawFd::as_raw_fd(&dir));
    let listener = UnixListener::bind(&short).or_else(|_| UnixListener::bind(&tmp))?;
    drop(dir);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    drop(private);
    info!(path = %path.display(), "control socket listening (status, plan, explain)");
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (tx, dropped) = (tx.clone(), dropped.clone());
            tokio::spawn(async move {
                let _permit = permit;
                serve(stream, tx, dropped).await;
            });
        }
    });
    Ok(())
}

async fn serve(mut stream: tokio::net::UnixStream, tx: mpsc::Sender<Asked>, dropped: IntCounter) {
    let answer = answer(&mut stream, tx, &dropped).await;
    let written = match answer {
        Answer::Value(v) => {
            let mut out = v.to_string();
            out.push('\n');
            let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
            write_bounded(&mut stream, out.as_bytes(), deadline).await
        }
        // Written on a blocking thread as it is made, each write bounded as above.
        Answer::Stream(make) => {
            let out = match stream.into_std().and_then(|s| Bounded::new(s, STREAM_TIMEOUT)) {
                Ok(out) => out,
                Err(e) => return debug!(error = %e, "control socket: cannot answer"),
            };
            tokio::task::spawn_blocking(move || make(Box::new(out)).map_or(Ok(()), Err))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)))
        }
    };
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            dropped.inc();
            warn!("control socket: dropped a client: {e}");
        }
        Err(e) => debug!(error = %e, "control socket: cannot answer (the client went away)"),
    }
}

/// Reads the request and has the loop answer it.
async fn answer(stream: &mut tokio::net::UnixStream, tx: mpsc::Sender<Asked>, dropped: &IntCounter) -> Answer {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST));
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    Answer::Value(match read {
        Ok(Ok(_)) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_REQUEST => json!({"error": format!(
            "the request is longer than {MAX_REQUEST} bytes: ask about fewer paths at a time"
        )}),
        Ok(Ok(_)) if line.ends_with(b"\n") || !line.is_empty() => match parse(line.trim_ascii()) {
            Ok(req) => {
                let (otx, orx) = oneshot::channel();
                match tx.try_send((req, otx)) {
                    // A client that hung up meanwhile lets its request go (an explain's dry
                    // sweep is stopped): it held it, and a connection slot, until the time limit.
                    Ok(()) => tokio::select! {
                        answered = tokio::time::timeout(ANSWER_TIMEOUT, orx) => match answered {
                            Ok(Ok(a)) => return a,
                            _ => json!({"error": "the daemon did not answer in time"}),
                        },
                        () = hung_up(reader.get_ref().get_ref()) => json!({"error": "the client went away"}),
                    },
                    Err(_) => json!({"error": "the daemon is busy with other requests: try again"}),
                }
            }
            Err(e) => json!({"error": e}),
        },
        Ok(Ok(_)) => json!({"error": "empty request"}),
        Ok(Err(e)) => json!({"error": format!("cannot read the request: {e}")}),
        Err(_) => {
            dropped.inc();
            warn!(
                "control socket: dropped a client that sent no request within {} s",
                REQUEST_TIMEOUT.as_secs()
            );
            json!({"error": format!("no request within {} s", REQUEST_TIMEOUT.as_secs())})
        }
    })
}

/// Returns once the client closed its end of `stream` (`POLLHUP`: both directions shut; a client
/// that only shut its writing side still waits for its answer), looked at twice a second.
async fn hung_up(stream: &tokio::net::UnixStream) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut fds = [PollFd::new(stream, PollFlags::empty())];
        let now = Timespec { tv_sec: 0, tv_nsec: 0 };
        if poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0) && fds[0].revents().contains(PollFlags::HUP) {
            return;
        }
    }
}

/// A connection written from a blocking thread, each write bounded as [`write_bounded`]'s: a
/// client that leaves no room for [`ANSWER_STALL`], or has not read all by the deadline, fails
/// the write with `TimedOut` (and a [`crate::report::StreamList`] then cancels the work it
/// streams). Non-blocking, waiting in `poll`: a blocking write with a timeout would wait its
/// whole timeout for the rest of a buffer after taking its start, and count that as progress.
struct Bounded {
    stream: std::os::unix::net::UnixStream,
    deadline: std::time::Instant,
}

impl Bounded {
    fn new(stream: std::os::unix::net::UnixStream, limit: std::time::Duration) -> io::Result<Bounded> {
        stream.set_nonblocking(true)?;
        Ok(Bounded {
            stream,
            deadline: std::time::Instant::now() + limit,
        })
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let stall_end = std::time::Instant::now() + ANSWER_STALL;
        loop {
            match self.stream.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            let now = std::time::Instant::now();
            let until = stall_end.min(self.deadline);
            if now >= until {
                return Err(stalled(until == self.deadline));
            }
            let left = until - now;
            let timeout = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.stream, PollFlags::OUT)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `bytes` as long as the client takes them: it fails with `TimedOut` when the client
/// took nothing for [`ANSWER_STALL`], or has not taken all by `deadline`.
async fn write_bounded(
    w: &mut (impl AsyncWrite + Unpin),
    mut bytes: &[u8],
    deadline: tokio::time::Instant,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let limit = (tokio::time::Instant::now() + ANSWER_STALL).min(deadline);
        match tokio::time::timeout_at(limit, w.write(bytes)).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stalled(limit == deadline)),
        }
    }
    Ok(())
}

/// The error of a client too slow to read its answer.
pub fn stalled(at_deadline: bool) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        if at_deadline {
            format!(
                "it had not read all of its answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            )
        } else {
            format!(
                "it read nothing of its answer for {} s (the daemon waits on no client)",
                ANSWER_STALL.as_secs()
            )
        },
    )
}
