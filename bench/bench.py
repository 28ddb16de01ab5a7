#!/usr/bin/env python3
"""shuffle-janitor against the cron job it replaces, side by side in one run.

(a) a no-op sweep (TTL longer than every file's age) against `find ROOT -type f -mmin +N -delete`
    with the same N, on the same warm tree;
(b) deleting the old half against `find ... -mmin +TTL -delete`, each on a fresh identical copy;
(c) peak RSS of each (/usr/bin/time -v);
and with --scale, the janitor's time and memory at several sizes; with --daemon, the daemon's
sweep RSS and its CPU while idle.

Rounds alternate which tool goes first; medians and ratios janitor/find are reported.
Usage: bench/run.sh [--files N] [--rounds R] [--scale 100000,1000000,3000000] [--daemon]
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
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JANITOR = os.path.join(REPO, "target/release/shuffle-janitor")
GENTREE = os.path.join(REPO, "target/release/examples/gentree")


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: wall, user+sys CPU seconds, peak RSS in KiB."""
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
    return {"wall": secs, "cpu": cpu, "rss_kib": int(field("Maximum resident set size (kbytes)"))}


def config(path, root, max_age, min_age="15m"):
    # mtime only, like `find -mmin`: copying the master tree with `cp -a` reads it, which moves
    # its atime (relatime), so every later copy would look freshly used to an atime basis.
    with open(path, "w") as f:
        f.write(f'roots = ["{root}"]\nmax_age = "{max_age}"\nmin_age = "{min_age}"\nage_basis = ["mtime"]\n')
    return path


def janitor(cfg):
    return [JANITOR, "sweep", "--config", cfg, "--log-level", "error"]


def count_files(root):
    return sum(len(files) for _, _, files in os.walk(root))


def generate(root, files):
    shutil.rmtree(root, ignore_errors=True)
    out = subprocess.run([GENTREE, root, str(files)], check=True, capture_output=True, text=True)
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def bench_daemon(work, master, idle_seconds):
    print(f"\n## Daemon over {master}")
    port = free_port()
    cfg = os.path.join(work, "daemon.toml")
    with open(cfg, "w") as f:
        f.write(f'roots = ["{master}"]\nmax_age = "3650d"\ninterval = "1h"\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    p = subprocess.Popen([JANITOR, "run", "--config", cfg, "--log-level", "warn"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if scrape(port, "shuffle_janitor_sweep_duration_seconds_count") == 1.0:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        hwm = int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1))
        dur = scrape(port, "shuffle_janitor_sweep_duration_seconds_sum")
        cpu0 = scrape(port, "process_cpu_seconds_total")
        time.sleep(idle_seconds)
        cpu1 = scrape(port, "process_cpu_seconds_total")
        print(f"  startup sweep {dur:.2f}s, peak RSS {hwm / 1024:.1f} MiB; idle for {idle_seconds}s: "
              f"process_cpu_seconds_total {cpu0:.2f} -> {cpu1:.2f} ({cpu1 - cpu0:.2f}s, the scrapes included)")
        return hwm, cpu1 - cpu0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", default="", help="comma-separated sizes for the scale table")
    ap.add_argument("--daemon", action="store_true", help="also measure the daemon's sweep RSS and idle CPU")
    ap.add_argument("--idle", type=int, default=60, help="seconds of idle daemon to measure")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", "/var/tmp/shuffle-janitor-bench"))
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    work = tempfile.mkdtemp(dir=args.dir)
    try:
        master = os.path.join(work, "master")
        t = time.time()
        info = generate(master, args.files)
        print(f"# shuffle-janitor vs find, {info['files']:,} files in {info['stores']} stores "
              f"({info['old_files']:,} older than the TTL); generated in {time.time() - t:.0f}s; "
              f"{os.cpu_count()} cores; {args.rounds} rounds, medians", flush=True)
        table = []
        bench_noop(work, master, args.rounds, table)
        bench_delete(work, master, info, args.rounds, table)
        print("\n| case | find wall | janitor wall | ratio | find CPU | janitor CPU | ratio | find RSS | janitor RSS |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in table:
            w, c, r = row["wall"], row["cpu"], row["rss_kib"]
            print(f"| {row['case']} | {w[0]:.2f}s | {w[1]:.2f}s | {w[2]:.2f}x | {c[0]:.2f}s | {c[1]:.2f}s | "
                  f"{c[2]:.2f}x | {r[0] / 1024:.1f} MiB | {r[1] / 1024:.1f} MiB |")
        if args.daemon:
            bench_daemon(work, master, args.idle)
        shutil.rmtree(master, ignore_errors=True)
        if args.scale:
            bench_scale(work, [int(x) for x in args.scale.split(",")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
