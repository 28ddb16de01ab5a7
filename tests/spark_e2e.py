#!/usr/bin/env python3
"""shuffle-janitor next to a real Spark standalone cluster, scraped by a real Prometheus.

Run through tests/spark_e2e.sh, which prepares pyspark, Java 17 and Prometheus and puts this
script in a network namespace of its own with only loopback. Standard library only.

The scenario (docs/reliability.md: "Real Spark end-to-end test"):
  1. the janitor runs (`run`) over the worker's SPARK_LOCAL_DIRS with short ages;
  2. a long-lived app (tests/spark_e2e_app.py, dynamic allocation, external shuffle service)
     shuffles once, its executor is released, and once the janitor has looked at the map
     outputs past min_age it reads them again through the shuffle service: same result, nothing
     recomputed, no FetchFailed;
  3. past max_age since that read the janitor deletes the map outputs whole, and /metrics
     counts exactly the files that vanished;
  4. the app reads again: Spark recomputes the lost map outputs, the result is still right;
  5. Prometheus scraped the daemon all along: its samples of
     shuffle_janitor_reclaimed_bytes_total and shuffle_janitor_oldest_file_age_seconds are
     values the daemon served at those times;
  6. dead executors' block stores: the executors released above leave their stores; an executor
     is then pinned (it holds a cached RDD, so dynamic allocation keeps it) with its store empty
     for longer than stores.min_idle. Every other store goes (emptied by the TTL, removed by the
     janitor, or by Spark's own cleanup at the executor's exit); the pinned executor's store is
     judged idle and kept; a watcher polling every 0.2 s sees no live executor's store ever
     missing; then a new shuffle on the pinned executor runs without a single failed task;
  7. a short report (stores created, reaped, removed by Spark, kept); on failure, the relevant
     log lines of every process.

Every process is started in its own process group and the group is killed on exit, whatever
the exit. Every wait is bounded, and all of them share one overall deadline.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

T0 = time.monotonic()
T0_WALL = time.time()
SHUFFLE_FILE = re.compile(r"^shuffle_(\d+)_(\d+)_(\d+)\.(data|index|checksum\.[A-Z0-9]+)(\.[0-9a-f-]{36})?$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Failure(Exception):
    pass


def log(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Run:
    """One run: its temp dir, its processes, its deadline."""

    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.deadline
        self.tmp = tempfile.mkdtemp(prefix="shuffle-janitor-e2e.")
        self.procs = []  # (name, Popen), stopped in reverse order
        self.logs = {}  # name -> path
        self.timings = []  # (step, seconds)
        for d in ("local", "work", "driver-local", "logs", "prometheus-data", "conf"):
            os.makedirs(os.path.join(self.tmp, d))
        # The root as the janitor names it in its labels (it canonicalizes roots).
        self.local = os.path.realpath(os.path.join(self.tmp, "local"))

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def remaining(self):
        return self.deadline - time.monotonic()

    def wait(self, what, cond, timeout, poll=0.25):
        """Polls cond() until it returns a true value, for at most timeout seconds (and never
        past the run's deadline). Returns that value."""
        end = time.monotonic() + min(timeout, max(0.0, self.remaining()))
        while True:
            self.check_alive()
            v = cond()
            if v:
                return v
            if time.monotonic() >= end:
                raise Failure("timed out after %.0fs waiting for %s" % (timeout, what))
            time.sleep(poll)

    def check_alive(self):
        """Nothing started may exit before the end: fail at once, not at the next timeout."""
        for name, p in self.procs:
            if p.poll() is not None:
                raise Failure("%s (pid %d) exited with %s" % (name, p.pid, p.returncode))

    def start(self, name, cmd, env=None, stdin=None, stdout=None):
        logpath = self.path("logs", name + ".log")
        self.logs[name] = logpath
        out = open(logpath, "wb")
        p = subprocess.Popen(
            cmd,
            env=env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else out,
            stderr=out,
            start_new_session=True,  # its own process group: killed whole, children included
        )
        out.close()
        self.procs.append((name, p))
        log("started %s (pid %d)" % (name, p.pid))
        return p

    def stop(self, name, p, grace=10.0):
        """SIGTERM to the process group, then SIGKILL after grace seconds."""
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Children of the group (executors, python workers) may outlive the leader.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log("warning: %s (pid %d) did not die" % (name, p.pid))

    def stop_all(self):
        for name, p in reversed(self.procs):
            self.stop(name, p)
        self.procs = []

    def timed(self, step, t):
        self.timings.append((step, time.monotonic() - t))


class Scraper(threading.Thread):
    """Scrapes the daemon's /metrics every 0.25 s and keeps every shuffle_janitor_* sample with
    the wall-clock interval of its request, to compare with what Prometheus stored."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.history = []  # (t_start, t_end, {(name, labels): value})
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.errors = 0

    def run(self):
        while not self.halt.is_set():
            t0 = time.time()
            try:
                _, text = http_get(self.url, timeout=2)
                samples = parse_metrics(text)
                with self.lock:
                    self.history.append((t0, time.time(), samples))
            except OSError:
                self.errors += 1
            self.halt.wait(0.25)

    def latest(self):
        with self.lock:
            return self.history[-1][2] if self.history else {}

    def value(self, name, **labels):
        return pick(self.latest(), name, labels)

    def series(self, name, **labels):
        with self.lock:
            hist = list(self.history)
        out = []
        for t0, t1, samples in hist:
            v = pick(samples, name, labels)
            if v is not None:
                out.append((t0, t1, v))
        return out


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line.startswith("shuffle_janitor_"):
            continue
        m = SAMPLE.match(line)
        if m:
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def pick(samples, name, labels):
    """The value of the one series of name whose labels include labels; the sum when several."""
    vals = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    return sum(vals) if vals else None


def inventory(root):
    """Spark shuffle files below root: {path: (size, last use, unit, freed)}. The last use is the
    newer of mtime and atime (the janitor's default age_basis); a unit is a map output, (blockmgr
    dir, shuffle_S_M_R), as the janitor groups them; freed is what deleting it frees, as the
    janitor counts reclaimed bytes: its allocated blocks, nothing if it has other links."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            m = SHUFFLE_FILE.match(f)
            if not m:
                continue
            p = os.path.join(dirpath, f)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            blockmgr = os.path.dirname(dirpath)
            stem = "shuffle_%s_%s_%s" % m.group(1, 2, 3)
            freed = st.st_blocks * 512 if st.st_nlink <= 1 else 0
            out[p] = (st.st_size, max(st.st_mtime, st.st_atime), (blockmgr, stem), freed)
    return out


def lone_halves(files):
    """Map outputs with a .data but no .index or the reverse (in-progress names excluded)."""
    kinds = {}
    for p, (_, _, unit, _) in files.items():
        m = SHUFFLE_FILE.match(os.path.basename(p))
        if not m.group(5):
            kinds.setdefault(unit, set()).add(m.group(4))
    return sorted(u for u, k in kinds.items() if ("data" in k) != ("index" in k))


EXECUTOR_ID = re.compile(rb"--executor-id\x00([^\x00]+)\x00")
APP_ID = re.compile(rb"--app-id\x00([^\x00]+)\x00")
STORE_CREATED = re.compile(r"DiskBlockManager: Created local directory at (\S+)")


def live_executors():
    """{pid: (app id, executor id)} of the executor JVMs running now, from /proc."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"CoarseGrainedExecutorBackend" in cmd:
            e, a = EXECUTOR_ID.search(cmd), APP_ID.search(cmd)
            if e and a:
                out[int(pid)] = (a.group(1).decode(), e.group(1).decode())
    return out


def list_stores(root):
    """The blockmgr-* directories below root (standalone: spark-*/executor-*/blockmgr-*)."""
    out = set()
    for dirpath, dirs, _ in os.walk(root):
        for d in dirs:
            if d.startswith("blockmgr-"):
                out.add(os.path.join(dirpath, d))
        dirs[:] = [d for d in dirs if not d.startswith("blockmgr-")]
    return out


class StoreWatcher(threading.Thread):
    """Polls the stores and the live executors every 0.2 s: when each store was first and last
    seen, which executor created it (its log says where), and every poll at which a live
    executor's store was missing. An executor counts as live at a poll when it was running both
    before and after the stores were listed."""

    def __init__(self, root, work):
        super().__init__(daemon=True)
        self.root, self.work = root, work
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.seen = {}  # store -> [first seen, last seen]
        self.owner = {}  # store -> (app id, executor id)
        self.alive = {}  # (app id, executor id) -> [first seen, last seen] alive
        self.violations = []

    def store_of(self, app_exec):
        for line in read(os.path.join(self.work, app_exec[0], app_exec[1], "stderr")).splitlines():
            m = STORE_CREATED.search(line)
            if m:
                return os.path.realpath(m.group(1))
        return None

    def poll(self):
        before = live_executors()
        # Owners are learnt from the executors' logs before the stores are listed: a store
        # whose creation is logged between the listing and the reading of the log is not
        # "gone", it was not there yet (Spark 3.5 hit that window).
        with self.lock:
            for pid, ae in before.items():
                if ae not in self.owner.values():
                    st = self.store_of(ae)
                    if st:
                        self.owner[st] = ae
            known = dict(self.owner)
        stores = {os.path.realpath(p) for p in list_stores(self.root)}
        after = live_executors()
        now = time.time()
        with self.lock:
            for st in stores:
                self.seen.setdefault(st, [now, now])[1] = now
            for pid, ae in after.items():
                self.alive.setdefault(ae, [now, now])[1] = now
                if ae not in self.owner.values():
                    st = self.store_of(ae)
                    if st:
                        self.owner[st] = ae
                if before.get(pid) == ae:
                    mine = [st for st, o in known.items() if o == ae]
                    for st in mine:
                        if st not in stores:
                            self.violations.append("%.1f: the store %s of live executor %s is gone" % (now, st, ae[1]))

    def run(self):
        while not self.halt.is_set():
            try:
                self.poll()
            except OSError:
                pass
            self.halt.wait(0.2)

    def present(self, at_or_after):
        with self.lock:
            return {st for st, (_, last) in self.seen.items() if last >= at_or_after}


def janitor_reaped(logpath):
    """Stores the janitor's JSON log says it removed (its debug 'dead store removed' lines)."""
    out = set()
    for line in read(logpath).splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        f = ev.get("fields", {})
        if f.get("message") == "dead store removed":
            out.add(os.path.realpath(f.get("store")))
    return out


class App:
    """The Spark app, driven over its stdin/stdout (see tests/spark_e2e_app.py)."""

    def __init__(self, run, proc, errlog):
        self.run = run
        self.proc = proc
        self.errlog = errlog
        self.replies = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("E2E "):
                with self.cond:
                    self.replies.append(json.loads(line[4:]))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def call(self, cmd, timeout):
        """Sends cmd; returns (reply, the driver log lines written meanwhile)."""
        start = os.path.getsize(self.errlog)
        n = len(self.replies)
        self.proc.stdin.write((cmd + "\n").encode())
        self.proc.stdin.flush()
        end = time.monotonic() + min(timeout, max(0.0, self.run.remaining()))
        with self.cond:
            while len(self.replies) == n:
                left = end - time.monotonic()
                if self.proc.poll() is not None:
                    raise Failure("the Spark app exited (%s) during %r" % (self.proc.returncode, cmd))
                if left <= 0:
                    raise Failure("the Spark app did not answer %r within %.0fs" % (cmd, timeout))
                self.cond.wait(min(left, 1.0))
            reply = self.replies[n]
        with open(self.errlog, errors="replace") as f:
            f.seek(start)
            lines = f.read().splitlines()
        return reply, lines


def executor_fetches(work, since):
    """Per executor log written after `since`: the totals of its shuffle fetches, from
    ShuffleBlockFetcherIterator's 'Getting N (..) non-empty blocks including L (..) local and
    H (..) host-local and P (..) push-merged-local and R (..) remote blocks'."""
    pat = re.compile(
        r"including (\d+) \(.*?\) local and (\d+) \(.*?\) host-local and (\d+) \(.*?\) "
        r"push-merged-local and (\d+) \(.*?\) remote blocks"
    )
    total = {"local": 0, "host_local": 0, "remote": 0, "executors": 0, "first_fetch": None}
    for dirpath, _, files in os.walk(work):
        if "stderr" not in files:
            continue
        p = os.path.join(dirpath, "stderr")
        if os.path.getmtime(os.path.dirname(p)) < since:
            continue  # an executor started before `since`
        total["executors"] += 1
        for line in read(p).splitlines():
            m = pat.search(line)
            if not m:
                continue
            total["local"] += int(m.group(1))
            total["host_local"] += int(m.group(2))
            total["remote"] += int(m.group(4))
            # Spark's default log4j layout: "yy/MM/dd HH:mm:ss", local time, whole seconds.
            try:
                at = time.mktime(time.strptime(line[:17], "%y/%m/%d %H:%M:%S"))
            except ValueError:
                continue
            total["first_fetch"] = min(at, total["first_fetch"] or at)
    return total


def janitor_deletions(logpath):
    """Paths the janitor's JSON log says it deleted (its debug 'delete' lines)."""
    out = []
    for line in read(logpath).splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        f = ev.get("fields", {})
        if f.get("message") == "delete" and not f.get("dry_run"):
            out.append((f.get("path"), f.get("reason")))
    return out


def prom_query(port, query, at=None):
    params = {"query": query}
    if at is not None:
        params["time"] = "%.3f" % at
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode(params))
    _, body = http_get(url, timeout=5)
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise Failure("Prometheus query %s: %s" % (query, body[:300]))
    return doc["data"]


def daemon_values_around(series, ts, slack=2.0):
    """Values the daemon served around ts: those of our own scrapes within slack seconds of
    it, and the last one before and the first one after that window. The gauges and counters
    checked here change only when a sweep ends (every `interval`), so a sample Prometheus took
    at ts must hold one of them."""
    near = [v for t0, t1, v in series if ts - slack <= t0 <= ts + slack or ts - slack <= t1 <= ts + slack]
    before = [v for t0, t1, v in series if t1 < ts - slack]
    after = [v for t0, t1, v in series if t0 > ts + slack]
    return near + before[-1:] + after[:1]


def same(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check_prometheus_samples(name, query, prom_port, own, at, window):
    """Every raw sample Prometheus holds for query over the last `window` seconds before `at`
    must be a value the daemon served around that sample's timestamp."""
    data = prom_query(prom_port, "%s[%ds]" % (query, window), at=at)
    check(data["resultType"] == "matrix" and len(data["result"]) == 1,
          "Prometheus: expected one series for %s, got %s" % (query, json.dumps(data)[:500]))
    values = [(float(ts), float(v)) for ts, v in data["result"][0]["values"]]
    check(len(values) >= 10, "Prometheus holds only %d samples of %s" % (len(values), name))
    bad = []
    for ts, v in values:
        cands = daemon_values_around(own, ts)
        if not any(same(v, c) for c in cands):
            bad.append((ts, v, sorted(set(cands))))
    check(not bad, "Prometheus samples of %s the daemon never served around their time "
          "(timestamp, value, daemon values): %s" % (name, bad[:5]))
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--janitor", required=True)
    ap.add_argument("--spark-home", required=True)
    ap.add_argument("--python", required=True, help="the venv's python, with pyspark")
    ap.add_argument("--prometheus", default="prometheus")
    ap.add_argument("--min-age", type=int, default=10)
    # Between the write of the map outputs and their read through the shuffle service lie the
    # idle timeout, min_age + a sweep (we wait for the janitor to have judged them) and the
    # start of a new executor JVM, which takes 10 to 25 s on 2 busy cores: 60 s leaves a margin.
    ap.add_argument("--max-age", type=int, default=60)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--min-idle", type=int, default=20, help="the janitor's stores.min_idle")
    ap.add_argument("--deadline", type=int, default=800, help="seconds for the whole scenario")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    args = ap.parse_args()

    run = Run(args)
    ok = False

    def on_signal(signum, _frame):
        raise Failure("interrupted by signal %d" % signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    log("temp dir %s" % run.tmp)
    try:
        report = scenario(run)
        ok = True
    except Failure as e:
        print("\nFAILED: %s\n" % e, flush=True)
        report = None
    except Exception as e:  # noqa: BLE001 - a bug in the test is a failure too, with the logs
        import traceback

        traceback.print_exc()
        print("\nFAILED: %s: %s\n" % (type(e).__name__, e), flush=True)
        report = None
    finally:
        # Ignore further signals while cleaning up: an interrupted cleanup leaks processes.
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        t = time.monotonic()
        run.stop_all()
        log("stopped every process (%.1fs)" % (time.monotonic() - t))
    if not ok:
        dump_logs(run)
    if report:
        print(report, flush=True)
    if ok and not args.keep:
        shutil.rmtree(run.tmp, ignore_errors=True)
    else:
        print("logs and files kept in %s" % run.tmp, flush=True)
    print("spark_e2e: %d passed, %d failed" % (1 if ok else 0, 0 if ok else 1), flush=True)
    return 0 if ok else 1


RELEVANT = re.compile(r"ERROR|WARN|Exception|FetchFailed|Resubmitting|level=error|Traceback")


def dump_logs(run, relevant_lines=15, tail_lines=10):
    """The lines that tell what went wrong: for every log, its last warnings and errors (stack
    frames left out) and its last lines. Everything stays in the temp dir for a closer look."""
    paths = dict(run.logs)
    for dirpath, _, files in os.walk(run.path("work")):
        for f in files:
            if f == "stderr":
                paths["executor " + os.path.relpath(dirpath, run.path("work"))] = os.path.join(dirpath, f)
    for name, p in paths.items():
        lines = read(p).splitlines()
        if not lines:
            continue
        print("----- %s (%s, %d lines) -----" % (name, p, len(lines)))
        relevant = [l for l in lines if RELEVANT.search(l) and not l.lstrip().startswith("at ")]
        if relevant:
            print("  warnings and errors (last %d of %d):" % (min(relevant_lines, len(relevant)), len(relevant)))
            for l in relevant[-relevant_lines:]:
                print("    " + l[:300])
        print("  last %d lines:" % min(tail_lines, len(lines)))
        for l in lines[-tail_lines:]:
            print("    " + l[:300])
    sys.stdout.flush()


def scenario(run):
    a = run.args
    ports = {k: free_port() for k in ("metrics", "prometheus", "master", "master_ui", "worker", "worker_ui", "ess")}
    env = dict(os.environ)
    env.update(
        SPARK_HOME=a.spark_home,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_CONF_DIR=run.path("conf"),  # nothing from a machine-wide spark-defaults.conf
        SPARK_LOG_DIR=run.path("logs"),
        PYSPARK_PYTHON=a.python,
        PYSPARK_DRIVER_PYTHON=a.python,
    )
    env.pop("SPARK_LOCAL_DIRS", None)
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    spark_class = os.path.join(a.spark_home, "bin", "spark-class")

    # --- 1. the janitor -----------------------------------------------------------------
    t = time.monotonic()
    cfg = run.path("janitor.toml")
    with open(cfg, "w") as f:
        f.write(
            'roots = ["%s"]\nmax_age = "%ds"\nmin_age = "%ds"\ninterval = "%ds"\n'
            # Pressure eviction is not under test here: on a disk already past the default
            # 85 %% it would delete the map outputs past min_age before the test reads them.
            "[watermark]\nhigh = 0.99\nlow = 0.98\npoll = \"1s\"\n"
            # Stores: quiet for min_idle before removal; an executor creates its store within
            # executor_startup of its start (a JVM start on 2 busy cores takes up to ~25 s).
            '[stores]\nmin_idle = "%ds"\nexecutor_startup = "90s"\n'
            '[metrics]\nlisten = "127.0.0.1:%d"\n'
            % (run.local, a.max_age, a.min_age, a.interval, a.min_idle, ports["metrics"])
        )
    janitor = run.start(
        "janitor",
        [a.janitor, "run", "--config", cfg, "--log-format", "json", "--log-level", "shuffle_janitor=debug,info"],
        env={k: v for k, v in env.items() if k not in ("RUST_LOG", "NOTIFY_SOCKET")},
    )
    metrics_url = "http://127.0.0.1:%d" % ports["metrics"]

    def ready():
        if janitor.poll() is not None:
            raise Failure("the janitor exited with %s" % janitor.returncode)
        try:
            return http_get(metrics_url + "/-/ready")[0] == 200
        except OSError:
            return False

    run.wait("the janitor's /-/ready", ready, 15)
    scraper = Scraper(metrics_url + "/metrics")
    scraper.start()
    run.wait("a first scrape of the janitor", lambda: scraper.value("shuffle_janitor_sweeps_total") is not None, 10)
    log("janitor ready on 127.0.0.1:%d: max_age %ds, min_age %ds, interval %ds, stores.min_idle %ds, root %s"
        % (ports["metrics"], a.max_age, a.min_age, a.interval, a.min_idle, run.local))
    watcher = StoreWatcher(run.local, run.path("work"))
    watcher.start()

    # --- Prometheus, scraping from the start ---------------------------------------------
    prom_cfg = run.path("prometheus.yml")
    with open(prom_cfg, "w") as f:
        f.write(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: shuffle-janitor\n    static_configs:\n"
            "      - targets: ['127.0.0.1:%d']\n" % ports["metrics"]
        )
    prom = run.start(
        "prometheus",
        [
            a.prometheus,
            "--config.file=" + prom_cfg,
            "--storage.tsdb.path=" + run.path("prometheus-data"),
            "--web.listen-address=127.0.0.1:%d" % ports["prometheus"],
            "--log.level=info",
        ],
    )
    prom_url = "http://127.0.0.1:%d" % ports["prometheus"]

    def prom_up():
        if prom.poll() is not None:
            raise Failure("Prometheus exited with %s" % prom.returncode)
        try:
            _, body = http_get(prom_url + "/api/v1/targets")
        except OSError:
            return False
        targets = json.loads(body)["data"]["activeTargets"]
        return any(x["health"] == "up" for x in targets)

    run.wait("Prometheus to scrape the janitor (target up)", prom_up, 60)
    run.timed("janitor and Prometheus up", t)
    log("Prometheus on 127.0.0.1:%d scrapes the janitor every 1 s" % ports["prometheus"])

    # --- Spark standalone: master, worker with the external shuffle service ---------------
    t = time.monotonic()
    master_props = run.path("master.properties")
    with open(master_props, "w") as f:
        f.write("spark.master.rest.enabled false\n")
    worker_props = run.path("worker.properties")
    with open(worker_props, "w") as f:
        f.write("spark.shuffle.service.enabled true\nspark.shuffle.service.port %d\n" % ports["ess"])
    master_url = "spark://127.0.0.1:%d" % ports["master"]
    run.start("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(ports["master"]), "--webui-port", str(ports["master_ui"]),
                               "--properties-file", master_props], env=env)
    run.wait("the Spark master", lambda: "I have been elected leader" in read(run.logs["spark-master"]), 90)
    wenv = dict(env, SPARK_LOCAL_DIRS=run.local)
    run.start("spark-worker", [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                               "--port", str(ports["worker"]), "--webui-port", str(ports["worker_ui"]),
                               "--cores", "2", "--memory", "4g", "--work-dir", run.path("work"),
                               "--properties-file", worker_props, master_url], env=wenv)
    run.wait("the Spark worker to register",
             lambda: "Successfully registered with master" in read(run.logs["spark-worker"]), 90)
    run.wait("the external shuffle service on port %d" % ports["ess"], lambda: port_open(ports["ess"]), 30)
    run.timed("Spark master and worker up", t)
    log("Spark standalone on %s, shuffle service on 127.0.0.1:%d, SPARK_LOCAL_DIRS=%s"
        % (master_url, ports["ess"], run.local))

    # --- the long-lived application ---------------------------------------------------------
    log4j = run.path("conf", "driver-log4j2.properties")
    with open(log4j, "w") as f:
        # Warnings, plus what the scheduler says about stages and lost/resubmitted tasks.
        f.write(
            "rootLogger.level = warn\nrootLogger.appenderRef.stderr.ref = console\n"
            "appender.console.type = Console\nappender.console.name = console\n"
            "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex\n"
            "logger.dag.name = org.apache.spark.scheduler.DAGScheduler\nlogger.dag.level = info\n"
            "logger.alloc.name = org.apache.spark.ExecutorAllocationManager\nlogger.alloc.level = info\n"
        )
    t = time.monotonic()
    applog = run.path("logs", "spark-app.log")
    appproc = run.start(
        "spark-app",
        [a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "spark_e2e_app.py"),
         "--master", master_url, "--ess-port", str(ports["ess"]), "--local-dir", run.path("driver-local"),
         "--idle-timeout", "4s", "--log4j", log4j],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    app = App(run, appproc, applog)

    # --- 2a. shuffle once ------------------------------------------------------------------
    r, lines = app.call("run", 180)
    check(r.get("ok"), "first action: wrong result or error: %s" % r)
    check(r["records_computed"] == r["records"], "first action computed %s records, not %s" % (r["records_computed"], r["records"]))
    run.timed("app start + first shuffle", t)
    log("first action: correct, %d records through the shuffle (%.1fs)" % (r["records"], r["seconds"]))
    t = time.monotonic()
    r, _ = app.call("wait_idle", 130)
    check(r.get("ok"), "the executor was not released: %s" % r)
    run.timed("executor released (idle timeout)", t)
    log("executor released by dynamic allocation (%.1fs)" % r["seconds"])

    # When the executor exits, the shuffle service deletes the files it does not serve (the
    # .checksum files) on a thread of its own: wait until the tree has settled.
    def settled():
        first = inventory(run.local)
        time.sleep(1.0)
        second = inventory(run.local)
        return second if first == second else None

    before = run.wait("the local dir to settle after the executor's exit", settled, 15, poll=0)
    units = {u for _, _, u, _ in before.values()}
    first = {p: v for p, v in before.items() if os.path.basename(p).startswith("shuffle_0_")}
    check(first, "no map output of shuffle 0 under %s" % run.local)
    check(not lone_halves(first), "Spark itself left lone halves: %s" % lone_halves(first))
    last_used = max(m for _, m, _, _ in first.values())
    first_bytes = sum(s for s, _, _, _ in first.values())
    suffixes = sorted({SHUFFLE_FILE.match(os.path.basename(p)).group(4) for p in first})
    log("on disk: %d files (%s), %d bytes, %d map outputs of shuffle 0"
        % (len(first), ", ".join(suffixes), first_bytes, len(units)))

    # --- 2b. read again through the shuffle service, while the janitor runs ------------------
    # First let the janitor judge the map outputs past min_age (and keep them): that makes the
    # read below a test of "not deleted while younger than max_age", not of a lucky schedule.
    t = time.monotonic()
    root_labels = {"root": run.local}
    run.wait("a sweep that kept the map outputs past min_age",
             lambda: (scraper.value("shuffle_janitor_oldest_file_age_seconds", **root_labels) or 0) >= a.min_age,
             a.min_age + 3 * a.interval + 10)
    sweeps_before_read = scraper.value("shuffle_janitor_sweeps_total")
    run.timed("janitor judged them past min_age", t)
    t = time.monotonic()
    read_started = time.time()
    age_at_read = read_started - last_used
    check(age_at_read < a.max_age, "the map outputs are already %.0fs old: this machine is too slow for max_age %ds"
          % (age_at_read, a.max_age))
    r, lines = app.call("run", 180)
    read_ended = time.time()
    fetches = executor_fetches(run.path("work"), read_started - 1)
    served_at = fetches["first_fetch"] or read_started
    fetch_failed = [l for l in lines if "FetchFailed" in l]
    if fetch_failed and served_at - last_used > a.max_age:
        raise Failure("second action: FetchFailed, but the map outputs were %.0fs old, past max_age (%ds), when the "
                      "new executor asked the shuffle service for them: this machine is too slow for that max_age"
                      % (served_at - last_used, a.max_age))
    check(not fetch_failed, "second action: FetchFailed in the app's log, the map outputs %.0fs old (max_age %ds): %s"
          % (served_at - last_used, a.max_age, fetch_failed[:3]))
    check(r.get("ok"), "second action (through the shuffle service): wrong result or error: %s" % r)
    check(r["records_computed"] == 0,
          "second action recomputed %d records: the map outputs were not served from disk" % r["records_computed"])
    check(fetches["remote"] > 0 and fetches["local"] == 0 and fetches["host_local"] == 0,
          "second action: expected every block fetched remotely from the shuffle service, got %s" % fetches)
    gone = [p for p in first if not os.path.exists(p)]
    check(not gone, "the janitor deleted map outputs younger than max_age: %s" % gone[:5])
    run.timed("second action, served by the shuffle service", t)
    log("second action: correct, nothing recomputed, %d blocks fetched from the shuffle service, "
        "no FetchFailed; the map outputs were %.0fs old when served (max_age %ds), %d janitor sweeps so far"
        % (fetches["remote"], served_at - last_used, a.max_age, sweeps_before_read))

    # --- 3. past max_age since that read: deleted whole, and counted --------------------------
    t = time.monotonic()
    deleted_before = scraper.value("shuffle_janitor_deleted_files_total", reason="ttl", kind="shuffle") or 0
    reclaimed_before = scraper.value("shuffle_janitor_reclaimed_bytes_total", reason="ttl") or 0
    r, _ = app.call("wait_idle", 130)
    check(r.get("ok"), "the executor was not released after the second action: %s" % r)
    # The read through the shuffle service is use: nothing may go before read + max_age, and
    # the first sweep after that must take them (plus the sweep's own time).
    run.wait("the janitor to delete the map outputs of shuffle 0",
             lambda: not any(os.path.exists(p) for p in first),
             max(0.0, read_ended + a.max_age + 2 * a.interval + 15 - time.time()), poll=0.2)
    gone_at = time.time()
    # Their mtime and atime are older than this read (relatime updated atime at the first
    # read already): only the janitor's inotify watch saw the shuffle service open them.
    check(gone_at >= served_at - 1 + a.max_age,
          "the map outputs went %.0fs after the shuffle service served them, before max_age (%ds): "
          "that read was not taken as use" % (gone_at - served_at, a.max_age))
    # The sweep that deleted them publishes its counts when it ends.
    expect_files = deleted_before + len(first)
    run.wait("deleted_files_total to count them",
             lambda: (scraper.value("shuffle_janitor_deleted_files_total", reason="ttl", kind="shuffle") or 0) >= expect_files,
             20)
    time.sleep(0.5)
    after = inventory(run.local)
    deleted = scraper.value("shuffle_janitor_deleted_files_total", reason="ttl", kind="shuffle") - deleted_before
    reclaimed = scraper.value("shuffle_janitor_reclaimed_bytes_total", reason="ttl") - reclaimed_before
    logged = janitor_deletions(run.logs["janitor"])
    logged_paths = {p for p, _ in logged}
    vanished = set(before) - set(after)
    check(not [p for p in first if p in after], "map outputs of shuffle 0 left: %s" % [p for p in first if p in after])
    check(not lone_halves(after), "lone .data or .index left: %s" % lone_halves(after))
    check(logged_paths == vanished,
          "files that vanished and files the janitor says it deleted differ: vanished only %s, logged only %s"
          % (sorted(vanished - logged_paths)[:5], sorted(logged_paths - vanished)[:5]))
    check(all(reason == "ttl" for _, reason in logged), "deletions for other reasons than ttl: %s" % logged)
    check(deleted == len(vanished), "deleted_files_total{reason=ttl,kind=shuffle} grew by %d, %d files vanished"
          % (deleted, len(vanished)))
    vanished_bytes = sum(before[p][3] for p in vanished)
    check(reclaimed == vanished_bytes, "reclaimed_bytes_total{reason=ttl} grew by %d, the files that vanished "
          "held %d bytes of blocks"
          % (reclaimed, vanished_bytes))
    errors = scraper.value("shuffle_janitor_errors_total")
    check(errors == 0, "the janitor counted %s errors" % errors)
    run.timed("waited past max_age; deleted whole", t)
    log("deleted whole %.0fs after the shuffle service served them: %d files (%d map outputs), %d bytes; "
        "/metrics counts the same" % (gone_at - served_at, deleted, len({before[p][2] for p in vanished}), reclaimed))

    # --- 4. read once more: Spark recomputes what is gone --------------------------------
    t = time.monotonic()
    r, lines = app.call("run", 240)
    check(r.get("ok"), "third action (after the deletion): wrong result or error: %s" % r)
    check(r["records_computed"] > 0, "third action recomputed nothing, yet the map outputs are gone")
    fetch_failed = [l for l in lines if "FetchFailed(" in l]  # one "Lost task ..." line per failed task
    resubmitted = [l for l in lines if "Resubmitting" in l]
    recomputed = {p for p in inventory(run.local) if os.path.basename(p).startswith("shuffle_0_")}
    check(recomputed, "no new map outputs of shuffle 0 were written")
    run.timed("third action, recomputed", t)
    log("third action: correct; Spark recomputed %d records (%d tasks lost to FetchFailed, %d stage resubmissions)"
        % (r["records_computed"], len(fetch_failed), len(resubmitted)))

    # --- 5. what Prometheus ingested ------------------------------------------------------
    t = time.monotonic()
    final_reclaimed = scraper.value("shuffle_janitor_reclaimed_bytes_total", reason="ttl")

    def prom_has_final():
        d = prom_query(ports["prometheus"], 'shuffle_janitor_reclaimed_bytes_total{reason="ttl"}')
        return d["result"] and same(float(d["result"][0]["value"][1]), final_reclaimed)

    run.wait("Prometheus to ingest reclaimed_bytes_total = %d" % final_reclaimed, prom_has_final, 15)
    at = time.time()
    window = int(at - T0_WALL) + 5
    rec = check_prometheus_samples(
        "shuffle_janitor_reclaimed_bytes_total", 'shuffle_janitor_reclaimed_bytes_total{reason="ttl"}',
        ports["prometheus"], scraper.series("shuffle_janitor_reclaimed_bytes_total", reason="ttl"), at, window)
    check(any(v == 0 for _, v in rec) and any(same(v, final_reclaimed) for _, v in rec),
          "Prometheus did not see reclaimed_bytes_total go from 0 to %d" % final_reclaimed)
    q = 'shuffle_janitor_oldest_file_age_seconds{root="%s"}' % run.local
    ages = check_prometheus_samples(
        "shuffle_janitor_oldest_file_age_seconds", q, ports["prometheus"],
        scraper.series("shuffle_janitor_oldest_file_age_seconds", root=run.local), at, window)
    # Through PromQL: the oldest file the janitor kept was past min_age at some point (it
    # judged the map outputs and kept them), and never past max_age (it deletes those).
    peak = float(prom_query(ports["prometheus"], "max_over_time(%s[%ds])" % (q, window), at=at)["result"][0]["value"][1])
    check(a.min_age <= peak <= a.max_age + 1,
          "max_over_time(oldest_file_age) = %.1f, expected within [min_age %d, max_age %d]" % (peak, a.min_age, a.max_age))
    run.timed("Prometheus checks", t)
    log("Prometheus: %d samples of reclaimed_bytes_total (0 -> %d) and %d of oldest_file_age_seconds "
        "(peak %.1fs), each a value the daemon served at that time" % (len(rec), final_reclaimed, len(ages), peak))

    # --- 6. dead executors' stores removed, a live idle executor's kept ---------------------
    t = time.monotonic()
    r, _ = app.call("wait_idle", 130)
    check(r.get("ok"), "the executor was not released after the third action: %s" % r)
    third_done = time.time()
    r, _ = app.call("pin", 180)
    check(r.get("ok") and len(r["executors"]) == 1, "pin: %s" % r)
    pinned = r["executors"][0]
    pinned_store = run.wait("the pinned executor's store in its log",
                            lambda: next((st for st, (_, e) in watcher.owner.items() if e == pinned), None), 30)
    pinned_born = time.time()
    log("executor %s pinned (a cached RDD), its store %s empty" % (pinned, os.path.relpath(pinned_store, run.local)))
    # Every other store goes: emptied by the TTL (the third action's map outputs max_age after
    # their last use), then quiet for min_idle, then a sweep; or removed by Spark itself.
    run.wait("every store but the pinned executor's to go",
             lambda: list_stores(run.local) == {pinned_store} or None,
             max(0.0, third_done + a.max_age + a.min_idle + 3 * a.interval + 30 - time.time()), poll=0.5)
    # The pinned executor's store, empty and quiet for min_idle, is judged idle, and stays.
    run.wait("the pinned executor's store judged idle past min_idle",
             lambda: time.time() - pinned_born > a.min_idle + a.interval
             and (scraper.value("shuffle_janitor_stores", root=run.local, state="idle") or 0) >= 1,
             a.min_idle + 3 * a.interval + 15)
    check(os.path.isdir(pinned_store), "the pinned executor's store was removed: %s" % pinned_store)
    check(inventory(pinned_store) == {}, "the pinned executor's store is not empty: its stay proves nothing")
    # A new shuffle on the surviving (pinned) executor: written and read without a failed task.
    r, lines = app.call("fresh", 180)
    failed = [l for l in lines if re.search(r"Lost task|FetchFailed|Resubmitting|TaskSetManager.*fail", l)]
    check(r.get("ok"), "the new shuffle on the pinned executor: wrong result or error: %s" % r)
    check(r["failed_tasks"] == 0 and not failed, "the new shuffle had failed tasks: %s; %s" % (r, failed[:3]))
    check(r["executors_before"] == [pinned] and r["executors"] == [pinned],
          "the new shuffle did not run on the pinned executor alone: %s" % r)
    written = inventory(pinned_store)
    check(written, "the new shuffle wrote nothing into the pinned executor's store")
    watcher.halt.set()
    watcher.join(2)
    check(not watcher.violations, "a live executor's store went missing: %s" % watcher.violations[:3])
    created = set(watcher.seen)
    # The counter against the log: the scraper samples every second, so a store removed the
    # moment the list above converged shows in a scrape a second later. Both are read again until
    # they agree (each is monotonic), for at most two intervals.
    def counted():
        names = janitor_reaped(run.logs["janitor"])
        metric = scraper.value("shuffle_janitor_reaped_stores_total") or 0
        return (names, metric) if len(names) == metric else None
    try:
        reaped, reaped_metric = run.wait("reaped_stores_total to count the stores the log names", counted,
                                         2 * a.interval + 2)
    except Failure as e:
        reaped_metric = scraper.value("shuffle_janitor_reaped_stores_total") or 0
        reaped = janitor_reaped(run.logs["janitor"])
        raise Failure("reaped_stores_total is %d, the log names %d stores (%s)" % (reaped_metric, len(reaped), e))
    reaped_dirs = scraper.value("shuffle_janitor_reaped_dirs_total") or 0
    check(reaped <= created, "the janitor says it removed stores never seen: %s" % sorted(reaped - created)[:3])
    check(pinned_store not in reaped, "the janitor removed the pinned executor's store")
    by_spark = created - reaped - list_stores(run.local)
    # Each store the janitor removed is one an executor created (and the watcher saw none go
    # while its executor lived).
    owners = {st: ae for st, ae in watcher.owner.items()}
    orphan = [st for st in reaped if st not in owners]
    check(not orphan, "stores removed whose executor is unknown: %s" % orphan[:3])
    executors_seen = len(watcher.alive)
    check(executors_seen >= 4, "only %d executors came and went" % executors_seen)
    run.timed("dead stores removed, the pinned one kept", t)
    log("stores: %d created by %d executors, %d removed by the janitor (%d directories), %d by Spark, %d kept "
        "(the pinned executor's, judged idle past min_idle %ds); new shuffle on it: %d stages, 0 failed tasks, "
        "%d files written" % (len(created), executors_seen, len(reaped), reaped_dirs, len(by_spark),
                              len(list_stores(run.local)), a.min_idle, r["stages"], len(written)))
    store_counts = (len(created), executors_seen, len(reaped), int(reaped_dirs), len(by_spark), len(list_stores(run.local)))

    # --- the end: the app stops, the janitor shuts down cleanly ------------------------------
    t = time.monotonic()
    appproc.stdin.write(b"quit\n")
    appproc.stdin.flush()
    try:
        appproc.wait(timeout=min(30, max(1, run.remaining())))
    except subprocess.TimeoutExpired:
        raise Failure("the Spark app did not stop within 30 s")
    check(appproc.returncode == 0, "the Spark app exited with %s" % appproc.returncode)
    scraper.halt.set()
    janitor.send_signal(signal.SIGTERM)
    try:
        janitor.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise Failure("the janitor did not stop within 10 s of SIGTERM")
    check(janitor.returncode == 0, "the janitor exited with %s on SIGTERM" % janitor.returncode)
    run.timed("app and janitor stopped", t)

    sweeps = scraper.series("shuffle_janitor_sweeps_total")
    lines = [
        "",
        "=== Real Spark end-to-end: PASSED ===",
        "Spark %s standalone, dynamic allocation, external shuffle service; janitor max_age %ds, "
        "min_age %ds, interval %ds" % (spark_version(a.spark_home), a.max_age, a.min_age, a.interval),
        "reclaimed: %d files (%d map outputs of shuffle 0, %s), %d bytes; %d sweeps"
        % (deleted, len({before[p][2] for p in vanished}), ", ".join(suffixes), reclaimed,
           int(sweeps[-1][2]) if sweeps else 0),
        "map outputs %.0fs old when the shuffle service served them again, deleted %.0fs after that"
        % (served_at - last_used, gone_at - served_at),
        "block stores: %d created by %d executors; %d removed by the janitor (%d directories), %d by Spark at "
        "executor exit, %d kept (a live executor's, idle past stores.min_idle); none missing while its "
        "executor lived; a new shuffle afterwards: 0 failed tasks" % store_counts,
        "steps:",
    ]
    lines += ["  %-48s %6.1fs" % (s, d) for s, d in run.timings]
    lines.append("  %-48s %6.1fs" % ("total so far", time.monotonic() - T0))
    return "\n".join(lines)


def spark_version(home):
    for f in os.listdir(os.path.join(home, "jars")):
        m = re.match(r"spark-core_[\d.]+-(.+)\.jar$", f)
        if m:
            return m.group(1)
    return "?"


if __name__ == "__main__":
    sys.exit(main())
