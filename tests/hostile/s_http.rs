//! Scenario 8, the metrics endpoint: idle connections (1,100 under `ulimit -n 1024`), a slow
//! client, 1 MiB headers, unknown methods and paths, requests in a tight loop: the daemon keeps
//! serving, sweeps go on, its fds and RSS stay bounded. Everything on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::kit::*;

pub const ALL: &[Scenario] = &[
    ("http_idle_connections_ulimit_1024", idle_connections),
    ("http_slow_huge_odd_requests", odd_requests),
    ("http_tight_loop", tight_loop),
];

fn body(root: &std::path::Path) -> String {
    config_text(&[root], "max_age = \"1h\"\nmin_age = \"1m\"\ninterval = \"1s\"")
}

/// 1,100 idle connections against a daemon limited to 1,024 fds: health answers, sweeps go on
/// (no EMFILE), the fd count stays bounded.
fn idle_connections(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let stale = unit_paths(&root.join(bm("i")), 1, 1);
    write_unit(&stale, 10, Duration::ZERO);
    let mut d = Daemon::start_with(s.path(), &body(&root), &[], "ulimit -n 1024;");
    d.wait_sweeps(1.0, Duration::from_secs(10));
    let n = 1100;
    let mut conns = Vec::new();
    for _ in 0..n {
        if let Ok(c) = TcpStream::connect_timeout(&([127, 0, 0, 1], d.port).into(), Duration::from_millis(500)) {
            conns.push(c);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let fds = d.fds();
    let health = http_get(d.port, "/-/healthy", Duration::from_secs(5));
    sc.check(health.is_some_and(|(s, _)| s == 200), || {
        format!("health does not answer with {} idle connections", conns.len())
    });
    // Stale by now: made after the start, a TTL sweep must still be able to open directories.
    let later = unit_paths(&root.join(bm("i")), 1, 2);
    let stage = s.join("stage");
    move_in(&later, 10, 48 * HOUR, &stage);
    let before = d.sweeps();
    std::thread::sleep(Duration::from_secs(4));
    let after = d.sweeps();
    sc.iterations = conns.len() as u64;
    sc.check(after >= before + 2.0, || format!("sweeps stopped: {before} -> {after}"));
    let emfile = d
        .metric("shuffle_janitor_errors_total", &[("op", "walk")])
        .unwrap_or(0.0);
    sc.check(emfile == 0.0, || {
        format!("{emfile} walk errors (EMFILE?) with idle clients")
    });
    sc.check(fds < 900, || {
        format!(
            "{fds} fds open with {} idle clients (connections not capped)",
            conns.len()
        )
    });
    let mut oracle = Oracle::default();
    oracle.unit(stale, true);
    oracle.unit(later, false);
    drop(conns);
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
    sc.note(format!("daemon fds with {n} idle clients: {fds}"));
}

fn raw(port: u16, req: &[u8], timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let _ = s.write_all(req);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn odd_requests(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut d = Daemon::start(s.path(), &body(&root));
    d.wait_sweeps(1.0, Duration::from_secs(10));
    let rss0 = d.rss_kib();
    // A slow client: one byte a second, while others are served.
    let port = d.port;
    let slow = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let t = Instant::now();
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n";
        let mut sent = 0;
        for b in req.iter().take(10) {
            if c.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        (sent, t.elapsed())
    });
    let mut served = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if d.get("/-/healthy").is_some_and(|(s, _)| s == 200) {
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sc.check(served > 30, || {
        format!("served {served} requests in 5 s beside a slow client")
    });
    // 1 MiB of headers.
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend(b"\r\n\r\n");
    let r = raw(d.port, &big, Duration::from_secs(5)).unwrap_or_default();
    sc.check(!r.starts_with("HTTP/1.1 200"), || "a 1 MiB header was accepted".into());
    // Unknown methods and paths.
    for (req, want) in [
        (&b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "405"),
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ""),
        (b"GET /metrics HTTP/9.9\r\n\r\n", ""),
    ] {
        sc.iterations += 1;
        let r = raw(d.port, req, Duration::from_secs(3)).unwrap_or_default();
        if !want.is_empty() {
            sc.check(r.split_whitespace().nth(1) == Some(want), || {
                format!("{:?} -> {:?}", String::from_utf8_lossy(&req[..12]), r.lines().next())
            });
        }
    }
    let (sent, _) = slow.join().unwrap();
    sc.check(d.get("/-/healthy").is_some(), || {
        "not serving after odd requests".into()
    });
    let rss1 = d.rss_kib();
    sc.check(rss1 < rss0 + 16 * 1024, || format!("RSS {rss0} -> {rss1} KiB"));
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    sc.note(format!("slow client sent {sent} bytes; RSS {rss0} -> {rss1} KiB"));
}

fn tight_loop(sc: &mut Sc) {
    let s = Scratch::new();
    let root = s.join("local");
    let mut oracle = Oracle::default();
    for m in 0..200u64 {
        let u = unit_paths(&root.join(bm("t")), 1, m);
        write_unit(&u, 10, Duration::ZERO);
        oracle.unit(u, true);
    }
    let mut d = Daemon::start(s.path(), &body(&root));
    d.wait_sweeps(1.0, Duration::from_secs(10));
    let (rss0, fds0) = (d.rss_kib(), d.fds());
    let secs = if sc.full { 60 } else { 10 };
    let before = d.sweeps();
    let port = d.port;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let mut n = 0u64;
                while t.elapsed() < Duration::from_secs(secs) {
                    if http_get(port, "/metrics", Duration::from_secs(2)).is_some() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let requests: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let after = d.sweeps();
    let (rss1, fds1) = (d.rss_kib(), d.fds());
    sc.iterations = requests;
    sc.check(after >= before + (secs as f64) / 2.0, || {
        format!("sweeps {before} -> {after} in {secs}s under load")
    });
    sc.check(rss1 < rss0 + 16 * 1024, || format!("RSS {rss0} -> {rss1} KiB"));
    sc.check(fds1 <= fds0 + 8, || format!("fds {fds0} -> {fds1}"));
    d.no_panic(sc);
    let _ = d.stop(Duration::from_secs(5));
    oracle.tally(sc);
    sc.note(format!(
        "{requests} requests in {secs}s; RSS {rss0}->{rss1} KiB; fds {fds0}->{fds1}"
    ));
}
