"""The long-lived Spark application of tests/spark_e2e.py (run with the venv's python).

It plays a long-running service with dynamic allocation: one shuffled RDD, built once, read
again and again while executors come and go. The orchestrator drives it one command per line on
standard input and reads one reply per command on standard output, a line starting with "E2E "
followed by JSON (Spark and py4j may print other lines; they are ignored). End of input stops
the app, so it never outlives an orchestrator that died.

Commands:
  run        run an action on the shuffled RDD; reply {ok, records_computed, seconds, ...}
  wait_idle  wait until dynamic allocation has released every executor; reply {seconds}
  pin        cache a small RDD in memory: the executor holding it is never released (dynamic
             allocation's cachedExecutorIdleTimeout is infinite), and its block store stays
             empty; reply {executors}
  fresh      a new shuffle (a shuffle id never used before) on the executors there are, checked
             like `run`; reply {ok, failed_tasks, stages, executors}
  quit       stop the SparkContext and exit

`records_computed` is an accumulator incremented by the map side of the shuffle: it stays put
when a later action is served from the stored map outputs, and grows when Spark recomputes them.
"""

import argparse
import json
import sys
import time
import traceback


def reply(**fields):
    sys.stdout.write("E2E " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def payload(k):
    # Deterministic but poorly compressible values, so the map outputs have some size and the
    # reduce side can check every value it receives.
    return "%016x" % ((k * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) * 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--master", required=True)
    ap.add_argument("--ess-port", required=True)
    ap.add_argument("--local-dir", required=True, help="the driver's spark.local.dir")
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--map-tasks", type=int, default=8)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--idle-timeout", default="4s")
    ap.add_argument("--log4j", help="log4j2 properties file for the driver")
    args = ap.parse_args()

    from pyspark import SparkConf, SparkContext

    conf = (
        SparkConf()
        .setMaster(args.master)
        .setAppName("shuffle-janitor-e2e")
        # Everything on loopback; no web UI.
        .set("spark.driver.host", "127.0.0.1")
        .set("spark.driver.bindAddress", "127.0.0.1")
        .set("spark.ui.enabled", "false")
        .set("spark.local.dir", args.local_dir)
        # The setting under test: executors are released when idle, their map outputs stay
        # on the node and the external shuffle service serves them from then on.
        .set("spark.shuffle.service.enabled", "true")
        .set("spark.shuffle.service.port", args.ess_port)
        .set("spark.dynamicAllocation.enabled", "true")
        .set("spark.dynamicAllocation.minExecutors", "0")
        .set("spark.dynamicAllocation.initialExecutors", "0")
        .set("spark.dynamicAllocation.maxExecutors", "1")
        .set("spark.dynamicAllocation.executorIdleTimeout", args.idle_timeout)
        .set("spark.dynamicAllocation.schedulerBacklogTimeout", "1s")
        # One executor with both cores: one JVM to start instead of two, on a 2-core machine.
        .set("spark.executor.cores", "2")
        .set("spark.executor.memory", "1g")
        # Same-host reducers would otherwise read the dead executor's files straight from disk
        # (host-local read); off, every read of a released executor's output goes through the
        # shuffle service's port, as it does for reducers on other nodes of a real cluster.
        .set("spark.shuffle.readHostLocalDisk", "false")
        # A fetch of a deleted file fails at once; no need to retry it three times, 5 s apart.
        .set("spark.shuffle.io.maxRetries", "1")
        .set("spark.shuffle.io.retryWait", "1s")
        .set("spark.python.worker.reuse", "true")
        .set("spark.ui.showConsoleProgress", "false")
    )
    if args.log4j:
        conf.set("spark.driver.extraJavaOptions", "-Dlog4j2.configurationFile=file:" + args.log4j)
    sc = SparkContext(conf=conf)

    computed = sc.accumulator(0)
    n, m, r = args.records, args.map_tasks, args.partitions

    def tag(k):
        computed.add(1)
        return (k, payload(k))

    # partitionBy: a plain shuffle (no map-side combine), r reduce partitions of key % r.
    shuffled = sc.parallelize(range(n), m).map(tag).partitionBy(r)

    def summarize(index, items):
        count = total = bad = 0
        for k, v in items:
            count += 1
            total += k
            bad += v != payload(k)
        yield (index, count, total, bad)

    expected = [(p, 0, 0, 0) for p in range(r)]
    for k in range(n):
        p, c, t, b = expected[k % r]
        expected[k % r] = (p, c + 1, t + k, b)

    def executors():
        # The driver's own block manager is in this map too.
        return sc._jsc.sc().getExecutorMemoryStatus().size() - 1

    def executor_ids():
        return sorted(str(sc._jsc.sc().getExecutorIds().mkString(",")).split(",")) if executors() else []

    pinned = None
    fresh_runs = 0

    for line in sys.stdin:
        cmd = line.strip()
        started = time.time()
        try:
            if cmd == "run":
                before = computed.value
                got = sorted(shuffled.mapPartitionsWithIndex(summarize).collect())
                reply(
                    ok=got == expected,
                    got=got if got != expected else None,
                    expected=expected if got != expected else None,
                    records=n,
                    records_computed=computed.value - before,
                    records_computed_total=computed.value,
                    seconds=time.time() - started,
                )
            elif cmd == "wait_idle":
                deadline = started + 120
                while executors() > 0 and time.time() < deadline:
                    time.sleep(0.25)
                reply(ok=executors() == 0, seconds=time.time() - started)
            elif cmd == "pin":
                from pyspark import StorageLevel

                pinned = sc.parallelize(range(1000), 2).persist(StorageLevel.MEMORY_ONLY)
                reply(ok=pinned.count() == 1000, executors=executor_ids(), seconds=time.time() - started)
            elif cmd == "fresh":
                fresh_runs += 1
                group = "fresh-%d" % fresh_runs
                sc.setJobGroup(group, "a new shuffle on the surviving executors")
                before_ids = executor_ids()
                got = sorted(
                    sc.parallelize(range(n), m).map(lambda k: (k, payload(k))).partitionBy(r)
                    .mapPartitionsWithIndex(summarize).collect()
                )
                tracker = sc.statusTracker()
                stages = failed = 0
                for job in tracker.getJobIdsForGroup(group):
                    info = tracker.getJobInfo(job)
                    for stage in info.stageIds if info else []:
                        st = tracker.getStageInfo(stage)
                        if st:
                            stages += 1
                            failed += st.numFailedTasks
                sc._jsc.clearJobGroup()
                reply(ok=got == expected, failed_tasks=failed, stages=stages, executors_before=before_ids,
                      executors=executor_ids(), seconds=time.time() - started)
            elif cmd == "quit":
                break
            else:
                reply(ok=False, error="unknown command %r" % cmd)
        except Exception as e:  # noqa: BLE001 - reported to the orchestrator, which fails
            traceback.print_exc()
            reply(ok=False, error="%s: %s" % (type(e).__name__, e), seconds=time.time() - started)
    sc.stop()


if __name__ == "__main__":
    main()
