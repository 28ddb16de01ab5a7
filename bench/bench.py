#!/usr/bin/env python3
"""shuffle-janitor against the cron job it replaces, side by side in one run.

(a) a no-op sweep (TTL longer than every file's age) against `find ROOT -type f -mmin +N -delete`
    with the same N, on the same warm tree;
(b) deleting the old half against `find ... -mmin +TTL -delete`, each on a fresh identical copy;
(c) peak RSS of each (/usr/bin/time -v);
and with --scale, the janitor's time and memory at several sizes.

--listing: `sweep --dry-run` listing the old half of the tree, in text and in JSON, next to a
sweep with no candidate: peak RSS (lists are streamed, not held).

--daemon: the index-driven daemon against the walking sweep on the same tree, in the same run:
its startup walk (and, by examples/watchcost.rs, what adding the daemon's watches costs a bare
walk that only lists and stats); a steady-state interval sweep's CPU, system calls
(`strace -c -f`: getdents64, opens, stats) and, with the page cache dropped, the bytes it reads
from the disk; its memory (peak RSS, bytes per unit of the index, and with --churn MINUTES, RSS
over a churn of map outputs created and removed); and, as root, disk pressure on a tmpfs of
--files files (--pressure-fs ext4: ext4 on a loop image in --dir, filled to 80 % by a ballast
file; --pressure-only runs that case alone): the time from crossing watermark.high to the first
deletion and down to watermark.low, for the daemon and for the walking sweep, and the rate of
`find -mmin +TTL -delete` on the same tree (--pressure-rounds N: each on a fresh tree, medians).

--dead-stores N: a sweep and find over the tree plus N empty stores of dead executors, before
and after the janitor reaps them.

--stores N (with --daemon, 12,000 by default, 0 to skip): the daemon over N small stores on a
tmpfs (30 files and 4 `NN` each) with --opens opens a second all along (4,000 by default): its
startup walk, the interval sweeps and overflows in 10 s of steady state, and the first pressure
eviction after one write takes the tmpfs past `high`.

--static BINARY: the static build (scripts/build-static.sh prints its path) against today's
dynamic target/release one, in the same run: no-op sweep, deleting, the daemon's startup (to
/-/ready and to the end of its first sweep) and RSS.

Rounds alternate which tool goes first; medians and ratios janitor/find are reported.
Usage: bench/run.sh [--files N] [--rounds R] [--scale 100000,1000000,3000000] [--daemon]
                    [--churn MINUTES] [--dead-stores N] [--static BINARY] [--stores N] [--opens N]
                    [--stores-only] [--listing [--listing-before BINARY]]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JANITOR = os.path.join(REPO, "target/release/shuffle-janitor")
GENTREE = os.path.join(REPO, "target/release/examples/gentree")
WATCHCOST = os.path.join(REPO, "target/release/examples/watchcost")


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: wall, user+sys CPU seconds, peak RSS in KiB, bytes read
    from the disk (its "File system inputs", 512-byte blocks)."""
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    err = out.stderr

    def field(name):
        return re.search(rf"{re.escape(name)}: (\S+)", err).group(1)

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return {"wall": secs, "cpu": cpu, "rss_kib": int(field("Maximum resident set size (kbytes)")),
            "read_bytes": int(field("File system inputs")) * 512}


def config(path, root, max_age, min_age="15m", extra=""):
    # mtime only, like `find -mmin`: copying the master tree with `cp -a` reads it, which moves
    # its atime (relatime), so every later copy would look freshly used to an atime basis.
    # Empty stores are not reaped unless a case asks for it (extra): that is a case of its own.
    extra = extra or "[stores]\nreap = false"
    with open(path, "w") as f:
        f.write(f'roots = ["{root}"]\nmax_age = "{max_age}"\nmin_age = "{min_age}"\nage_basis = ["mtime"]\n'
                f'state_dir = ""\n{extra}\n')
    return path


def janitor(cfg, binary=None):
    return [binary or JANITOR, "sweep", "--config", cfg, "--log-level", "error"]


def count_files(root):
    return sum(len(files) for _, _, files in os.walk(root))


def generate(root, files, empty_stores=0, per_store=10000, nn=64):
    shutil.rmtree(root, ignore_errors=True)
    out = subprocess.run([GENTREE, root, str(files), str(per_store), str(empty_stores), str(nn)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def compare(name, runs_find, runs_jan, table):
    row = {"case": name}
    for key in ("wall", "cpu", "rss_kib"):
        f, j = median(runs_find, key), median(runs_jan, key)
        row[key] = (f, j, j / f if f else float("nan"))
    table.append(row)
    w, c, r = row["wall"], row["cpu"], row["rss_kib"]
    print(f"  {name}: wall find {w[0]:.2f}s janitor {w[1]:.2f}s ({w[2]:.2f}x); "
          f"cpu find {c[0]:.2f}s janitor {c[1]:.2f}s ({c[2]:.2f}x); "
          f"rss find {r[0] / 1024:.1f} MiB janitor {r[1] / 1024:.1f} MiB", flush=True)


def bench_noop(work, master, rounds, table):
    cfg = config(os.path.join(work, "noop.toml"), master, "3650d", "15m")
    find = ["find", master, "-type", "f", "-mmin", f"+{3650 * 24 * 60}", "-delete"]
    timed(find), timed(janitor(cfg))  # warm the cache
    fr, jr = [], []
    for r in range(rounds):
        order = [(find, fr), (janitor(cfg), jr)]
        for cmd, sink in order if r % 2 == 0 else reversed(order):
            sink.append(timed(cmd))
    compare("no-op sweep", fr, jr, table)


def bench_delete(work, master, info, rounds, table):
    ttl_min = info["ttl_minutes"]
    fr, jr = [], []
    for r in range(rounds):
        a, b = os.path.join(work, "copy-find"), os.path.join(work, "copy-janitor")
        for d in (a, b):
            shutil.rmtree(d, ignore_errors=True)
            subprocess.run(["cp", "-a", master, d], check=True)
        cfg = config(os.path.join(work, "delete.toml"), b, f"{ttl_min}m", "15m")
        find = ["find", a, "-type", "f", "-mmin", f"+{ttl_min}", "-delete"]
        # Both copies were just written: both trees are equally warm.
        order = [(find, fr), (janitor(cfg), jr)]
        for cmd, sink in order if r % 2 == 0 else reversed(order):
            sink.append(timed(cmd))
        left_find, left_jan = count_files(a), count_files(b)
        print(f"    round {r + 1}: find left {left_find} files, janitor left {left_jan} "
              f"(the janitor keeps the old files that are not Spark's)", flush=True)
        # A benchmark of a janitor that deleted the wrong amount measures nothing.
        if left_find != info["files"] - info["old_files"] or left_jan != info["files"] - info["old_spark_files"]:
            sys.exit(f"round {r + 1}: expected find to leave {info['files'] - info['old_files']} files "
                     f"and the janitor {info['files'] - info['old_spark_files']}")
    for d in (a, b):
        shutil.rmtree(d, ignore_errors=True)
    compare(f"deleting {info['old_files']} of {info['files']} files", fr, jr, table)


def daemon_startup(binary, cfg):
    """Starts `run` and returns (seconds to /-/ready, seconds to the end of the first sweep, RSS
    in KiB then), and stops it."""
    port = free_port()
    t0 = time.time()
    p = subprocess.Popen([binary, "run", "--config", cfg, "--log-level", "error",
                          f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
    ready = swept = None
    try:
        while swept is None:
            if p.poll() is not None:
                sys.exit(f"{binary} run exited {p.returncode}")
            try:
                if ready is None and urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5).status == 200:
                    ready = time.time() - t0
                if ready is not None and (scrape(port, "shuffle_janitor_sweeps_total") or 0) > 0:
                    swept = time.time() - t0
            except OSError:
                pass
            time.sleep(0.01)
        rss = proc_field(p.pid, "VmRSS")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    return ready, swept, rss


def bench_static(work, master, info, rounds, static_bin):
    """Today's build (target/release, glibc linked dynamically) against the static one, side by
    side in one run: no-op sweep, deleting, daemon startup, peak RSS."""
    print(f"\n## Static build ({static_bin}) against today's dynamic one ({JANITOR}), "
          f"{info['files']:,} files, {rounds} rounds alternating, medians", flush=True)
    builds = [("dynamic", JANITOR), ("static", static_bin)]
    rows = []
    noop = config(os.path.join(work, "static-noop.toml"), master, "3650d", "15m")
    for _, b in builds:
        timed(janitor(noop, b))  # warm the cache
    runs = {n: [] for n, _ in builds}
    for r in range(rounds):
        for n, b in builds if r % 2 == 0 else reversed(builds):
            runs[n].append(timed(janitor(noop, b)))
    rows.append(("no-op sweep", runs))
    runs = {n: [] for n, _ in builds}
    ttl_min = info["ttl_minutes"]
    for r in range(rounds):
        for n, b in builds if r % 2 == 0 else reversed(builds):
            d = os.path.join(work, "static-copy")
            shutil.rmtree(d, ignore_errors=True)
            subprocess.run(["cp", "-a", master, d], check=True)
            cfg = config(os.path.join(work, "static-delete.toml"), d, f"{ttl_min}m", "15m")
            runs[n].append(timed(janitor(cfg, b)))
            if count_files(d) != info["files"] - info["old_spark_files"]:
                sys.exit(f"{n}: deleted the wrong number of files")
    shutil.rmtree(os.path.join(work, "static-copy"), ignore_errors=True)
    rows.append((f"deleting {info['old_spark_files']:,} files", runs))
    print("\n| case | dynamic wall | static wall | ratio | dynamic CPU | static CPU | ratio | dynamic peak RSS | static peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, runs in rows:
        d, st = runs["dynamic"], runs["static"]
        w = (median(d, "wall"), median(st, "wall"))
        c = (median(d, "cpu"), median(st, "cpu"))
        m = (median(d, "rss_kib") / 1024, median(st, "rss_kib") / 1024)
        print(f"| {case} | {w[0]:.3f}s | {w[1]:.3f}s | {w[1] / w[0]:.2f}x | {c[0]:.3f}s | {c[1]:.3f}s | "
              f"{c[1] / c[0]:.2f}x | {m[0]:.1f} MiB | {m[1]:.1f} MiB |")
    cfg = config(os.path.join(work, "static-daemon.toml"), master, "3650d", "15m")
    starts = {n: [] for n, _ in builds}
    for r in range(rounds):
        for n, b in builds if r % 2 == 0 else reversed(builds):
            starts[n].append(daemon_startup(b, cfg))
    print("\n| daemon `run` | dynamic | static |\n| --- | ---: | ---: |")
    for i, what, fmt in ((0, "to /-/ready", "{:.3f}s"), (1, "to the end of the first sweep (startup walk included)", "{:.3f}s"),
                         (2, "RSS then", "{:.1f} MiB")):
        vals = [statistics.median(x[i] for x in starts[n]) / (1024 if i == 2 else 1) for n, _ in builds]
        print(f"| {what} | " + " | ".join(fmt.format(v) for v in vals) + " |")
    for n, b in builds:
        print(f"  {n}: {b}, {os.path.getsize(b):,} bytes", flush=True)


def bench_scale(work, sizes):
    print("\n## Scale (janitor only, no-op sweep then deleting the old half)")
    print("| files | no-op wall | no-op CPU | no-op peak RSS | delete wall | delete peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for n in sizes:
        root = os.path.join(work, f"scale-{n}")
        info = generate(root, n)
        noop = config(os.path.join(work, "scale-noop.toml"), root, "3650d")
        timed(janitor(noop))
        a, b = timed(janitor(noop)), timed(janitor(noop))
        best = min((a, b), key=lambda x: x["wall"])
        dele = timed(janitor(config(os.path.join(work, "scale-del.toml"), root, f"{info['ttl_minutes']}m")))
        shutil.rmtree(root, ignore_errors=True)
        row = (n, best["wall"], best["cpu"], best["rss_kib"] / 1024, dele["wall"], dele["rss_kib"] / 1024)
        rows.append(row)
        print("| {:,} | {:.2f}s | {:.2f}s | {:.1f} MiB | {:.2f}s | {:.1f} MiB |".format(*row), flush=True)
    return rows


def bench_listing(work, master, info, before=None):
    """`sweep --dry-run` over the tree with the old half as candidates, listing them in text and
    in JSON (to /dev/null), next to a sweep with no candidate: peak RSS and wall time. Lists are
    streamed, so the three should peak alike."""
    ttl = config(os.path.join(work, "list.toml"), master, f"{info['ttl_minutes']}m")
    noop = config(os.path.join(work, "list-noop.toml"), master, "3650d")
    print(f"\n## Listing ({info['files']:,} files, {info['old_files']:,} of them candidates)")
    print("| case | binary | wall | CPU | peak RSS |")
    print("| --- | --- | ---: | ---: | ---: |")
    cases = [("no-candidate sweep --dry-run", noop, []),
             ("sweep --dry-run (text)", ttl, []),
             ("sweep --dry-run --format json", ttl, ["--format", "json"])]
    binaries = [("this", JANITOR)] + ([("before", before)] if before else [])
    timed(janitor(noop) + ["--dry-run"])  # warm the cache
    rows = []
    for label, cfg, extra in cases:
        for name, binary in binaries:
            r = timed(janitor(cfg, binary) + ["--dry-run"] + extra)
            rows.append((label, name, r))
            print(f"| {label} | {name} | {r['wall']:.2f}s | {r['cpu']:.2f}s | {r['rss_kib'] / 1024:.1f} MiB |",
                  flush=True)
    return rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port, name):
    """The value of a metric: the sum over its label sets (None when it is not there)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(values) if values else None


def drop_caches(level=3):
    """Drops the page cache (1), or it and the dentries and inodes (3); False where that is not
    allowed."""
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write(f"{level}\n")
        return True
    except OSError:
        return False


def warm_code(pid):
    """Reads the files a process has mapped (its binary, libc...) back into the page cache from
    this process, so that the daemon's read_bytes after a cache drop counts what it reads of the
    tree, not its own code paged in again."""
    paths = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                paths.add(parts[5].strip())
    warm_paths(paths)


def warm_paths(paths):
    for p in paths:
        try:
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass
        except OSError:
            pass


def binary_and_libs(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return [binary] + re.findall(r"(/\S+) \(0x", out)


def proc_field(pid, name, fname="status"):
    """A number from /proc/PID/status (kB fields) or /proc/PID/io."""
    with open(f"/proc/{pid}/{fname}") as f:
        m = re.search(rf"^{re.escape(name)}:\s+(\d+)", f.read(), re.M)
    return int(m.group(1))


def proc_cpu(pid):
    """User + system CPU seconds of a process and its threads, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """shuffle-janitor run over one root, with its metrics on a free port."""

    def __init__(self, work, root, extra="", name="daemon", interval="5s", log=subprocess.DEVNULL, binary=JANITOR,
                 modern=True):
        self.port = free_port()
        cfg = os.path.join(work, f"{name}.toml")
        # `modern`: this version's keys (state_dir) are known to the binary.
        state = 'state_dir = ""\n' if modern else ""
        with open(cfg, "w") as f:
            f.write(f'roots = ["{root}"]\nmax_age = "3650d"\nage_basis = ["mtime"]\ninterval = "{interval}"\n'
                    f'{state}{extra}\n[metrics]\nlisten = "127.0.0.1:{self.port}"\n')
        self.started = time.time()
        self.proc = subprocess.Popen([binary, "run", "--config", cfg, "--log-level", "warn"], stderr=log)
        self.pid = self.proc.pid

    def metric(self, name):
        try:
            return scrape(self.port, name)
        except OSError:
            return None

    def wait_sweeps(self, n, timeout=900):
        """Waits until n sweeps have ended; returns the time it happened (polled every 20 ms)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"the daemon exited with {self.proc.returncode}")
            v = self.metric("shuffle_janitor_sweeps_total")
            if v is not None and v >= n:
                return time.time()
            time.sleep(0.05)
        sys.exit(f"the daemon did not finish {n} sweeps within {timeout}s")

    def startup(self):
        """Seconds from the start to the end of the first sweep, by the daemon's own clock (its
        last-sweep timestamp), not by when a 20 ms poll saw it."""
        seen = self.wait_sweeps(1)
        end = self.metric("shuffle_janitor_last_sweep_timestamp_seconds")
        return (end if end else seen) - self.started

    def sweeps(self):
        return self.metric("shuffle_janitor_sweeps_total") or 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def strace_counts(path):
    """{syscall: calls} from an `strace -c` summary."""
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[-1] != "total":
            try:
                out[parts[-1]] = int(parts[3])
            except ValueError:
                pass
    return out


def thread_reads(pid):
    """{thread name: read_bytes} of each thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            n = proc_field(f"{pid}/task/{tid}", "read_bytes", "io")
        except (OSError, AttributeError):
            continue
        out[name] = out.get(name, 0) + n
    return out


def bench_daemon(work, master, info, walk, churn_minutes, old_janitor=None):
    """The index-driven daemon against the walking sweep (`walk`: the no-op row of the table)
    and, given the binary of a daemon that walks at every interval (`--old-janitor`), against
    that daemon too, side by side."""
    print(f"\n## The daemon over {master}: index against walk", flush=True)
    # Today's walk, cold: what the walking mode reads each interval once the cache is gone.
    noop = config(os.path.join(work, "noop.toml"), master, "3650d", "15m")
    for level, what in ((1, "page cache"), (3, "page cache, dentries and inodes")):
        if drop_caches(level):
            warm_paths(binary_and_libs(JANITOR))  # count the tree, not the program
            cold = timed(janitor(noop))
            timed(janitor(noop))  # warm again
            print(f"  the walking sweep (`sweep`), cold ({what} dropped): {cold['wall']:.2f}s, "
                  f"{cold['read_bytes']:,} bytes read from the disk", flush=True)
    rows = {}
    # Startup side by side, alternating (the machine is noisy): the walking sweep, and each
    # daemon from its start to the end of its first sweep.
    starts = {"sweep": [], "index daemon": []} | ({"walking daemon": []} if old_janitor else {})
    for _ in range(5):
        starts["sweep"].append(timed(janitor(noop))["wall"])
        for label, binary, modern in (("index daemon", JANITOR, True), ("walking daemon", old_janitor, False)):
            if binary:
                d = Daemon(work, master, name="startup", binary=binary, modern=modern)
                starts[label].append(d.startup())
                d.stop()
    startup = {k: sorted(v)[len(v) // 2] for k, v in starts.items()}
    print("  startup, median of 5 alternating: " + ", ".join(f"{k} {v:.2f}s" for k, v in startup.items()), flush=True)
    # What the kernel charges for the watches alone, on a walk that does nothing else: the
    # part of the index daemon's startup that no change to the janitor can take away.
    cost = json.loads(subprocess.run([WATCHCOST, master, "5"], check=True, capture_output=True, text=True).stdout)
    bare, watched = statistics.median(cost["bare"]), statistics.median(cost["watched"])
    print(f"  a bare walk (list and stat only), median of 5 alternating: {bare:.3f}s without watches, "
          f"{watched:.3f}s with the daemon's watches ({(watched / bare - 1) * 100:+.1f} %)", flush=True)
    if old_janitor:
        rows["walking daemon"] = measure_daemon(work, master, info, "walking daemon", old_janitor, False, walk, 0)
    if old_janitor:
        # The walking daemon's cold-cache interval read back only part of the tree: warm it
        # again, so that both daemons start on the same cache.
        timed(janitor(noop))
    rows["index daemon"] = measure_daemon(work, master, info, "index daemon", JANITOR, True, walk, churn_minutes)
    return rows


def measure_daemon(work, master, info, label, binary, modern, walk, churn_minutes):
    """One daemon over `master`: startup, steady-state sweeps (CPU, system calls, cold reads),
    memory, and churn."""
    print(f"  -- {label} ({binary})", flush=True)
    # An empty daemon, for the memory that is not the tree's.
    empty = os.path.join(work, "empty-root")
    os.makedirs(empty, exist_ok=True)
    d0 = Daemon(work, empty, name="empty", binary=binary, modern=modern)
    d0.wait_sweeps(1, 60)
    time.sleep(1)
    base_rss = proc_field(d0.pid, "VmRSS")
    d0.stop()

    d = Daemon(work, master, binary=binary, modern=modern)
    try:
        up = d.startup()
        units = d.metric("shuffle_janitor_index_units") or info["files"]
        startup_hwm = proc_field(d.pid, "VmHWM")
        print(f"  startup (start to the end of the first sweep): {up:.2f}s (the walking sweep: {walk['wall']:.2f}s); "
              f"peak RSS {startup_hwm / 1024:.1f} MiB", flush=True)
        # Steady state: interval sweeps with nothing to delete.
        # No scrape inside the window (a scrape costs the daemon CPU): one before, one after.
        n0, dur0 = d.sweeps(), d.metric("shuffle_janitor_sweep_duration_seconds_sum")
        cpu0 = proc_cpu(d.pid)
        time.sleep(6 * 5 + 1)
        cpu1 = proc_cpu(d.pid)
        n1, dur1 = d.sweeps(), d.metric("shuffle_janitor_sweep_duration_seconds_sum")
        per_sweep_cpu = (cpu1 - cpu0) / max(1, n1 - n0)
        per_sweep_wall = (dur1 - dur0) / max(1, n1 - n0)
        print(f"  steady-state sweep ({n1 - n0:.0f} in 31 s): {per_sweep_wall * 1000:.1f} ms wall, "
              f"{per_sweep_cpu * 1000:.1f} ms CPU (all of the daemon's CPU between sweeps included) = "
              f"{100 * per_sweep_cpu / walk['cpu']:.2f}% of the walking sweep's {walk['cpu']:.2f}s", flush=True)
        # System calls over three interval sweeps.
        trace = os.path.join(work, "strace.txt")
        st = subprocess.Popen(["strace", "-c", "-f", "-o", trace, "-p", str(d.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1)
        n2 = d.sweeps()
        time.sleep(3 * 5)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=60)
        n2 = d.sweeps() - n2
        calls = strace_counts(trace)
        getdents = calls.get("getdents64", 0)
        opens = calls.get("openat", 0) + calls.get("open", 0)
        stats = sum(v for k, v in calls.items() if "stat" in k and k not in ("statfs", "fstatfs"))
        statfs = calls.get("statfs", 0) + calls.get("fstatfs", 0)
        print(f"  strace -c -f over {n2:.0f} steady-state sweeps (15 s, no scrape): getdents64 {getdents}, "
              f"openat {opens}, stat calls {stats}, statfs {statfs}", flush=True)
        # Cold cache: the steady-state intervals after the page cache was dropped (what shuffle
        # traffic does), then after the dentries and inodes were dropped too (a harder case).
        cold_read = {}
        for level, what in ((1, "page cache"), (3, "page cache, dentries and inodes")):
            n3 = d.sweeps()
            d.wait_sweeps(n3 + 1, 60)  # just after a sweep: the next is an interval away
            if not drop_caches(level):
                print("  cold cache: SKIPPED (cannot write /proc/sys/vm/drop_caches here)")
                break
            warm_code(d.pid)
            reads = []
            for k in range(2):
                r0, t0 = proc_field(d.pid, "read_bytes", "io"), thread_reads(d.pid)
                d.wait_sweeps(n3 + 2 + k, 60)
                t1 = thread_reads(d.pid)
                by_thread = {n: v - t0.get(n, 0) for n, v in t1.items() if v - t0.get(n, 0) > 0}
                reads.append(proc_field(d.pid, "read_bytes", "io") - r0)
                print(f"  cold cache ({what} dropped, the daemon's own code read back by another process): "
                      f"interval {k + 1} after the drop read {reads[-1]:,} bytes from the disk; by thread "
                      f"{by_thread}", flush=True)
            cold_read[level] = reads
        hwm = proc_field(d.pid, "VmHWM")
        rss = proc_field(d.pid, "VmRSS")
        per_unit = (rss - base_rss) * 1024 / units if units else float("nan")
        print(f"  memory: peak RSS {hwm / 1024:.1f} MiB, RSS {rss / 1024:.1f} MiB against {base_rss / 1024:.1f} "
              f"MiB with an empty root: {per_unit:.0f} bytes per unit ({units:,.0f} units)", flush=True)
        churn = bench_churn(d, master, churn_minutes) if churn_minutes else None
        return {"startup": up, "walk_wall": walk["wall"], "walk_cpu": walk["cpu"], "units": units,
                "sweep_wall": per_sweep_wall, "sweep_cpu": per_sweep_cpu, "getdents64": getdents,
                "openat": opens, "stats": stats, "cold_read": cold_read, "hwm": hwm, "rss": rss,
                "base_rss": base_rss, "bytes_per_unit": per_unit, "churn": churn}
    finally:
        d.stop()


def bench_churn(d, master, minutes):
    """Map outputs created and removed in the daemon's tree for `minutes` (as executors write and
    the shuffle service's cleanup or the TTL removes), the daemon's RSS sampled all along."""
    stores = sorted(os.path.join(master, s) for s in os.listdir(master) if s.startswith("blockmgr-"))
    print(f"  churn for {minutes} min: 100 map outputs (300 files) created per second, each removed 100 s later",
          flush=True)
    end = time.time() + minutes * 60
    made, removed, i = [], 0, 0
    samples = []
    next_sample = time.time()
    while time.time() < end:
        t = time.time()
        for _ in range(100):
            store = stores[i % len(stores)]
            stem = f"shuffle_9_{i}_0"
            paths = []
            for suffix, size in ((".data", 256), (".index", 16), (".checksum.ADLER32", 8)):
                name = stem + suffix
                nn = java_hash(name) % 64
                p = os.path.join(store, f"{nn:02x}", name)
                with open(p, "wb") as f:
                    f.write(b"c" * size)
                paths.append(p)
            made.append(paths)
            i += 1
        # Keep 10,000 of them (30,000 files) on disk: the index is at its size after 100 s, and
        # what RSS does after that is the daemon's, not the tree's growth.
        while len(made) > 10_000:
            for p in made.pop(0):
                os.unlink(p)
            removed += 1
        if t >= next_sample:
            samples.append((t, proc_field(d.pid, "VmRSS"), d.metric("shuffle_janitor_index_units")))
            next_sample = t + 15
            if len(samples) % 20 == 1:
                print(f"    minute {(t - samples[0][0]) / 60:.0f}: RSS {samples[-1][1] / 1024:.1f} MiB, "
                      f"{samples[-1][2]:,.0f} units", flush=True)
        time.sleep(max(0.0, 1.0 - (time.time() - t)))
    for paths in made:
        for p in paths:
            os.unlink(p)
    drift = d.metric("shuffle_janitor_index_drift_total") or 0
    rss = [r for _, r, _ in samples]
    first_min = [r for t, r, _ in samples if t - samples[0][0] >= 120][:1] or rss[:1]
    print(f"  churn: {i:,} map outputs created, {removed + len(made):,} removed; RSS after 2 min "
          f"{first_min[0] / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB, last {rss[-1] / 1024:.1f} MiB; "
          f"index units {samples[0][2]:,.0f} .. {max(u for _, _, u in samples):,.0f}; drift {drift:.0f}", flush=True)
    return {"created": i, "rss_1min": first_min[0], "rss_max": max(rss), "rss_last": rss[-1], "drift": drift,
            "minutes": minutes}


def java_hash(s):
    h = 0
    for c in s.encode("utf-16-le").decode("utf-16-le"):
        h = (h * 31 + ord(c)) & 0xFFFFFFFF
    return h


def used_bytes(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def pressure_tmpfs(work, files, per_store=10000, nn=64):
    """A tmpfs holding a --files tree at 80 % of its size. Returns (mountpoint, info) or None."""
    mnt = os.path.join(work, "tmpfs")
    os.makedirs(mnt, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16g,nr_inodes=0", "tmpfs", mnt]).returncode:
        return None
    info = generate(os.path.join(mnt, "root"), files, per_store=per_store, nn=nn)
    used, _ = used_bytes(mnt)
    # At least 128 MiB: the write that crosses `high` (8 MiB past it) must fit in a small tree's.
    size = max(int(used / 0.80), 128 << 20) // 4096 * 4096
    subprocess.run(["mount", "-o", f"remount,size={size}", mnt], check=True)
    return mnt, info


def pressure_ext4(work, files, per_store=10000, nn=64):
    """An ext4 filesystem on a loop image holding a --files tree, filled to 80 % by a ballast
    file outside the root (ext4 cannot be shrunk to the tree as the tmpfs is). Returns
    (mountpoint, info) or None. The image lives in `work` (on the disk of --dir): about 6.4 KB a
    file."""
    mnt, img = os.path.join(work, "ext4"), os.path.join(work, "ext4.img")
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(max(files * 6400, 256 << 20))
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(files * 13 // 10 + 10000), img]).returncode == 0
    if not made or subprocess.run(["mount", "-o", "loop", img, mnt]).returncode:
        return None
    info = generate(os.path.join(mnt, "root"), files, per_store=per_store, nn=nn)
    used, size = used_bytes(mnt)
    ballast = int(0.80 * size) - used
    if ballast < 0:
        subprocess.run(["umount", mnt])
        sys.exit(f"the tree takes {100 * used / size:.0f}% of the ext4 image, more than 80%: make the image larger")
    with open(os.path.join(mnt, "ballast"), "wb") as f:
        if ballast:
            os.posix_fallocate(f.fileno(), 0, ballast)
    subprocess.run(["sync"], check=True)
    return mnt, info


class UsagePoller(threading.Thread):
    """Reads statvfs every 0.5 ms once started: when use first reached `high` (the crossing),
    the first moment after that it fell (a deletion), and the last (deletions over: no fall for
    2 s), with the use then."""

    def __init__(self, path, high_bytes):
        super().__init__(daemon=True)
        self.path, self.high = path, high_bytes
        self.crossed = self.first = self.last = None
        self.final = None
        self.halt = threading.Event()

    def run(self):
        prev = None
        while not self.halt.is_set():
            used, size = used_bytes(self.path)
            now = time.time()
            if self.crossed is None:
                if used >= self.high:
                    self.crossed = now
            elif prev is not None and used < prev:
                self.first = self.first or now
                self.last = now
            if self.last is not None and now - self.last > 2.0:
                self.final = used / size
                return
            prev = used
            time.sleep(0.0005)


def cross_high(root, high, poller=None):
    """Writes a young spill file into a store (as an executor would) that takes the tmpfs past
    `high` by 8 MiB. With `poller`, gives it the moment the write passed `high` if it did not see
    it itself: on ext4 the daemon may delete while the write goes on, and the use may never be
    at `high` when the poller looks."""
    used, size = used_bytes(root)
    need = int(high * size) - used + 8 * 1024 * 1024
    store = sorted(s for s in os.listdir(root) if s.startswith("blockmgr-"))[0]
    with open(os.path.join(root, store, "00", "temp_shuffle_00000000-0000-0000-0000-00000000f111"), "wb") as f:
        chunk = b"f" * (1 << 20)
        while need > 0:
            f.write(chunk[: min(need, len(chunk))])
            need -= len(chunk)
            if poller is not None and poller.crossed is None and need <= 8 * 1024 * 1024:
                poller.crossed = time.time()


def bench_pressure(work, files, fs="tmpfs", rounds=1):
    """First deletion and time to `low` after a tmpfs (or an ext4 image) of `files` files
    crosses `high`: the daemon (index) against the walking sweep (`shuffle-janitor sweep`, as
    the daemon ran before), and `find -mmin +TTL -delete` on the same tree (its rate: files
    deleted a second, over its whole run), each on a tree fresh from gentree, in an order that
    rotates from round to round; medians."""
    print(f"\n## Disk pressure on {fs} holding {files:,} files, {rounds} round(s)", flush=True)
    modes = ["daemon", "walk", "find"]
    runs = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            made = pressure_ext4(work, files) if fs == "ext4" else pressure_tmpfs(work, files)
            if made is None:
                print(f"  SKIPPED: cannot mount a {fs} here (needs root)")
                return None
            mnt, info = made
            try:
                row = pressure_round(work, mnt, info, mode)
            finally:
                subprocess.run(["umount", mnt])
                if fs == "ext4":
                    os.unlink(os.path.join(work, "ext4.img"))
            runs[mode].append(row)
    out = {}
    for mode in modes:
        rows = runs[mode]
        out[mode] = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
    if rounds > 1:
        d, w, f = out["daemon"], out["walk"], out["find"]
        print(f"  medians: daemon first deletion {d['first'] * 1000:.0f} ms, {d['rate']:,.0f} files/s to low; "
              f"walk first {w['first'] * 1000:.0f} ms, {w['rate']:,.0f} files/s; find {f['rate']:,.0f} files/s; "
              f"daemon / find rate {d['rate'] / f['rate']:.2f}x", flush=True)
    return out


def pressure_round(work, mnt, info, mode):
    """One pressure run of `mode` on a fresh filesystem `mnt` holding a generated tree."""
    root = os.path.join(mnt, "root")
    _, size = used_bytes(mnt)
    if mode == "find":
        ttl_min = info["ttl_minutes"]
        t = timed(["find", root, "-type", "f", "-mmin", f"+{ttl_min}", "-delete"])
        left = count_files(root)
        if left != info["files"] - info["old_files"]:
            sys.exit(f"find left {left} files, expected {info['files'] - info['old_files']}")
        rate = info["old_files"] / t["wall"]
        print(f"  find: {info['old_files']:,} files deleted in {t['wall']:.2f}s wall, {t['cpu']:.2f}s CPU "
              f"({rate:,.0f} per second)", flush=True)
        return {"first": float("nan"), "done": t["wall"], "deleted": info["old_files"], "rate": rate,
                "cpu": t["cpu"]}
    poller = UsagePoller(mnt, 0.85 * size)
    extra = "[watermark]\nhigh = 0.85\nlow = 0.75\npoll = \"5s\"\n[stores]\nreap = false"
    if mode == "daemon":
        d = Daemon(work, root, extra=extra, name="pressure", interval="1h")
        d.wait_sweeps(1)
        time.sleep(2)
        poller.start()
        cross_high(root, 0.85, poller)
        deadline = time.time() + 600
        while poller.final is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        deleted = d.metric("shuffle_janitor_deleted_files_total") or 0
        d.stop()
    else:
        cfg = config(os.path.join(work, "pressure.toml"), root, "3650d", "15m", extra=extra)
        poller.start()
        cross_high(root, 0.85, poller)
        # The walking daemon began a sweep like this one when it saw the crossing.
        r = subprocess.run(janitor(cfg) + ["--format", "json"], capture_output=True, text=True)
        deleted = json.loads(r.stdout)["deleted_files"]
    crossed = poller.crossed or float("nan")
    first = (poller.first - crossed) if poller.first else float("nan")
    poller.join(5)
    done = (poller.last - crossed) if poller.last else float("nan")
    final = poller.final if poller.final is not None else used_bytes(mnt)[0] / size
    rate = deleted / done if done == done and done > 0 else float("nan")
    print(f"  {mode}: first deletion {first * 1000:.0f} ms after crossing high, the last {done:.2f}s after "
          f"the crossing, use then {100 * final:.2f}% (low 75%); {deleted:,.0f} files deleted "
          f"({rate:,.0f} per second)", flush=True)
    return {"first": first, "done": done, "deleted": deleted, "rate": rate, "cpu": float("nan")}


class Opener(threading.Thread):
    """Opens (and closes) files of a tree at `rate` a second, as Spark's readers and the shuffle
    service do: each open is an inotify event the daemon applies."""

    def __init__(self, root, rate):
        super().__init__(daemon=True)
        self.paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".index")]
        self.rate, self.opens = rate, 0
        self.halt = threading.Event()
        self.started = time.time()

    def run(self):
        i, start = 0, time.time()
        self.started = start
        while not self.halt.is_set() and self.paths:
            # Batches of 1/100 s; behind schedule, it does not sleep.
            for _ in range(max(1, self.rate // 100)):
                try:
                    os.close(os.open(self.paths[i % len(self.paths)], os.O_RDONLY))
                except OSError:
                    pass
                i += 1
            self.opens = i
            time.sleep(max(0.0, start + i / self.rate - time.time()))


def bench_many_stores(work, stores, opens_per_sec, binary=None):
    """The daemon over many small stores (30 files, 4 `NN` each: the watches, one per directory,
    stay under the default `fs.inotify.max_user_watches`) on a tmpfs, with `opens_per_sec` opens a
    second all along: its startup (start to the end of the first sweep), then the first pressure
    eviction after one write takes the tmpfs past `high`, and when usage is back at `low`."""
    files = stores * 61 // 2  # a store ends past 30 files, at its last map output
    print(f"\n## Many stores: {stores:,} stores of 30 files (4 NN each) on a tmpfs, {opens_per_sec:,} opens a "
          "second", flush=True)
    made = pressure_tmpfs(work, files, per_store=30, nn=4)
    if made is None:
        print("  SKIPPED: cannot mount a tmpfs here (needs root)")
        return None
    mnt, info = made
    root = os.path.join(mnt, "root")
    try:
        _, size = used_bytes(mnt)
        extra = "[watermark]\nhigh = 0.85\nlow = 0.75\npoll = \"5s\"\n[stores]\nreap = false"
        opener = Opener(root, opens_per_sec)
        opener.start()
        d = Daemon(work, root, extra=extra, name="many", interval="2s", binary=binary or JANITOR)
        try:
            up = d.startup()
            time.sleep(2)
            sweeps0, overflows0 = d.sweeps(), d.metric("shuffle_janitor_inotify_overflows_total") or 0
            time.sleep(10)
            sweeps1, overflows1 = d.sweeps(), d.metric("shuffle_janitor_inotify_overflows_total") or 0
            poller = UsagePoller(mnt, 0.85 * size)
            poller.start()
            cross_high(root, 0.85)
            deadline = time.time() + 600
            while poller.final is None and time.time() < deadline:
                time.sleep(0.05)
            deleted = d.metric("shuffle_janitor_deleted_files_total") or 0
            overflows = d.metric("shuffle_janitor_inotify_overflows_total") or 0
        finally:
            d.stop()
            opener.halt.set()
            if "poller" in locals():
                poller.halt.set()
                poller.join(5)
        crossed = poller.crossed or float("nan")
        first = (poller.first - crossed) if poller.first else float("nan")
        done = (poller.last - crossed) if poller.last else float("nan")
        rate = opener.opens / max(1e-9, time.time() - opener.started)
        print(f"  {info['files']:,} files in {info['stores']:,} stores; opens kept up: {rate:,.0f} a second", flush=True)
        print(f"  startup (start to the end of the first sweep): {up:.2f}s", flush=True)
        print(f"  steady state, 10 s with the opens: {sweeps1 - sweeps0:.0f} interval sweeps (interval 2 s), "
              f"{overflows1 - overflows0:.0f} inotify overflows", flush=True)
        print(f"  pressure: first deletion {first * 1000:.0f} ms after crossing high, the last {done:.2f}s after "
              f"the crossing; {deleted:,.0f} files deleted; {overflows:.0f} overflows in all", flush=True)
        return {"startup": up, "first": first, "done": done, "overflows": overflows,
                "sweeps_10s": sweeps1 - sweeps0}
    finally:
        subprocess.run(["umount", mnt])


def bench_dead_stores(work, files, empty_stores, rounds):
    """A no-op sweep and find over FILES Spark files plus EMPTY_STORES empty dead stores, before
    and after the janitor reaps them."""
    root = os.path.join(work, "dead")
    t = time.time()
    info = generate(root, files, empty_stores)
    print(f"\n## {info['files']:,} files plus {empty_stores:,} empty dead stores ({info['empty_dirs']:,} "
          f"directories); generated in {time.time() - t:.0f}s", flush=True)
    noop = config(os.path.join(work, "dead-noop.toml"), root, "3650d")
    find = ["find", root, "-type", "f", "-mmin", f"+{3650 * 24 * 60}", "-delete"]
    table = []

    def side_by_side(label):
        timed(find), timed(janitor(noop))
        fr, jr = [], []
        for r in range(rounds):
            order = [(find, fr), (janitor(noop), jr)]
            for cmd, sink in order if r % 2 == 0 else reversed(order):
                sink.append(timed(cmd))
        compare(label, fr, jr, table)

    side_by_side(f"no-op sweep, {empty_stores:,} dead stores")
    time.sleep(1.5)  # past min_idle
    reap = config(os.path.join(work, "dead-reap.toml"), root, "3650d", extra='[stores]\nmin_idle = "1s"')
    r = timed(janitor(reap))
    left = sum(1 for s in os.listdir(root) if s.startswith("blockmgr-"))
    print(f"  the reaping sweep: {r['wall']:.2f}s wall, {r['cpu']:.2f}s CPU; {left} stores left "
          f"(of {info['stores'] + empty_stores})", flush=True)
    if left != info["stores"]:
        sys.exit(f"expected the {info['stores']} stores with files to be left, found {left}")
    side_by_side("no-op sweep, after reaping")
    shutil.rmtree(root, ignore_errors=True)
    return table, r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", default="", help="comma-separated sizes for the scale table")
    ap.add_argument("--daemon", action="store_true", help="also measure the index-driven daemon (see above)")
    ap.add_argument("--churn", type=int, default=0, help="with --daemon: minutes of churn under the daemon")
    ap.add_argument("--dead-stores", type=int, default=0, help="also measure a sweep over N empty dead stores")
    ap.add_argument("--no-delete", action="store_true", help="skip the deleting rounds (the longest part)")
    ap.add_argument("--no-pressure", action="store_true", help="with --daemon: skip the tmpfs pressure case")
    ap.add_argument("--pressure-rounds", type=int, default=1,
                    help="rounds of the pressure case (daemon, walking sweep and find, order rotating)")
    ap.add_argument("--pressure-fs", choices=["tmpfs", "ext4"], default="tmpfs",
                    help="with --daemon: the pressure case on a tmpfs, or on ext4 on a loop image in --dir "
                    "(about 6.4 KB a file)")
    ap.add_argument("--pressure-only", action="store_true", help="measure the pressure case alone (no no-op, "
                    "deleting or daemon rows)")
    ap.add_argument("--stores", type=int, default=12000,
                    help="with --daemon: the many-stores case's stores (30 files each; 0 skips it)")
    ap.add_argument("--opens", type=int, default=4000,
                    help="with --daemon: opens a second during the many-stores case")
    ap.add_argument("--stores-only", action="store_true", help="measure the many-stores case alone (no tree of "
                    "--files, no comparison with find), for --old-janitor too when given")
    ap.add_argument("--old-janitor", help="with --daemon: the binary of a daemon that walks at every interval "
                    "(e.g. built from an earlier commit), measured side by side")
    ap.add_argument("--static", metavar="BINARY", help="also measure this static build (scripts/build-static.sh) "
                    "side by side with target/release's: no-op sweep, delete, daemon startup, RSS")
    ap.add_argument("--listing", action="store_true", help="also measure sweep --dry-run listing the old half "
                    "in text and JSON, next to a no-candidate sweep (peak RSS)")
    ap.add_argument("--listing-before", metavar="BINARY", help="with --listing: an earlier build, side by side")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", "/var/tmp/shuffle-janitor-bench"))
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    work = tempfile.mkdtemp(dir=args.dir)
    if args.pressure_only:
        try:
            bench_pressure(work, args.files, args.pressure_fs, args.pressure_rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.stores_only:
        try:
            if args.old_janitor:
                print(f"# {args.old_janitor}")
                bench_many_stores(work, args.stores, args.opens, args.old_janitor)
                print(f"# {JANITOR}")
            bench_many_stores(work, args.stores, args.opens)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        master = os.path.join(work, "master")
        t = time.time()
        info = generate(master, args.files)
        print(f"# shuffle-janitor vs find, {info['files']:,} files in {info['stores']} stores "
              f"({info['old_files']:,} older than the TTL); generated in {time.time() - t:.0f}s; "
              f"{os.cpu_count()} cores; {args.rounds} rounds, medians", flush=True)
        table = []
        if args.listing:
            bench_listing(work, master, info, args.listing_before)
        bench_noop(work, master, args.rounds, table)
        if not args.no_delete:
            bench_delete(work, master, info, args.rounds, table)
        print("\n| case | find wall | janitor wall | ratio | find CPU | janitor CPU | ratio | find RSS | janitor RSS |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in table:
            w, c, r = row["wall"], row["cpu"], row["rss_kib"]
            print(f"| {row['case']} | {w[0]:.2f}s | {w[1]:.2f}s | {w[2]:.2f}x | {c[0]:.2f}s | {c[1]:.2f}s | "
                  f"{c[2]:.2f}x | {r[0] / 1024:.1f} MiB | {r[1] / 1024:.1f} MiB |")
        if args.static:
            bench_static(work, master, info, args.rounds, os.path.abspath(args.static))
        if args.daemon:
            walk = {k: table[0][k][1] for k in ("wall", "cpu")}
            bench_daemon(work, master, info, walk, args.churn, args.old_janitor)
        shutil.rmtree(master, ignore_errors=True)
        if args.daemon and not args.no_pressure:
            bench_pressure(work, args.files, args.pressure_fs, args.pressure_rounds)
        if args.daemon and args.stores:
            bench_many_stores(work, args.stores, args.opens)
        if args.dead_stores:
            dead, _ = bench_dead_stores(work, args.files, args.dead_stores, args.rounds)
            print("\n| case | find wall | janitor wall | ratio | find CPU | janitor CPU | ratio | find RSS | janitor RSS |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for row in dead:
                w, c, r = row["wall"], row["cpu"], row["rss_kib"]
                print(f"| {row['case']} | {w[0]:.2f}s | {w[1]:.2f}s | {w[2]:.2f}x | {c[0]:.2f}s | {c[1]:.2f}s | "
                      f"{c[2]:.2f}x | {r[0] / 1024:.1f} MiB | {r[1] / 1024:.1f} MiB |")
        if args.scale:
            bench_scale(work, [int(x) for x in args.scale.split(",")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
