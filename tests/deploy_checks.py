"""Checks of deploy/ for tests/deploy.sh: parsing, the configs embedded in the scheduler files, the
structure those files must have, and the metric names the alerts, the dashboard and the README use.

    python3 tests/deploy_checks.py COMMAND ARGS...

Each command prints what it checked and exits 1 with a message on the first failure. Needs PyYAML.
"""

import fnmatch
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def fail(msg):
    print(f"tests/deploy_checks.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}")


def parse_all():
    """Every JSON and YAML file under deploy/ parses."""
    n = 0
    for p in sorted(DEPLOY.rglob("*")):
        if p.suffix == ".json":
            try:
                json.loads(p.read_text())
            except json.JSONDecodeError as e:
                fail(f"{p.relative_to(ROOT)}: {e}")
        elif p.suffix in (".yml", ".yaml"):
            try:
                list(yaml.safe_load_all(p.read_text()))
            except yaml.YAMLError as e:
                fail(f"{p.relative_to(ROOT)}: {e}")
        else:
            continue
        n += 1
    if n == 0:
        fail("no JSON or YAML file under deploy/")
    ok(f"{n} JSON and YAML files under deploy/ parse")


def listen_port(config_text):
    listen = tomllib.loads(config_text).get("metrics", {}).get("listen", "0.0.0.0:19337")
    return int(listen.rsplit(":", 1)[1])


def marathon_app(name):
    return json.loads((DEPLOY / "marathon" / name).read_text())


def marathon_config(out):
    """The config embedded in the tarball app (deploy/marathon/shuffle-janitor-tarball.json)."""
    app = marathon_app("shuffle-janitor-tarball.json")
    Path(out).write_text(app["env"]["SHUFFLE_JANITOR_CONFIG"])


def marathon_common(app, config, what):
    """What both Marathon apps must have: one per agent, the reserved role, the checks on
    metrics.listen's port, host networking. Returns a summary."""
    if app.get("constraints") != [["hostname", "UNIQUE"]]:
        fail(f"{what}: constraints are {app.get('constraints')}, not [['hostname', 'UNIQUE']]")
    roles = app.get("acceptedResourceRoles") or []
    if not roles or "*" in roles:
        fail(f"{what}: acceptedResourceRoles must name the reserved role, not '*'")
    hc = app.get("healthChecks") or []
    if not any(h.get("path") == "/-/healthy" and h.get("portIndex") == 0 for h in hc):
        fail(f"{what}: no health check on /-/healthy at portIndex 0")
    port = listen_port(config)
    ports = [p["port"] for p in app.get("portDefinitions", [])]
    if ports[:1] != [port] or not app.get("requirePorts"):
        fail(f"{what}: portDefinitions[0] must be metrics.listen's port {port} with requirePorts, got {ports}")
    names = [p.get("name") for p in app.get("portDefinitions", [])]
    rc = app.get("readinessChecks") or []
    if not any(r.get("path") == "/-/ready" and r.get("portName") == names[0] for r in rc):
        fail(f"{what}: no readiness check on /-/ready at the port {names[0]!r}")
    if app.get("networks") != [{"mode": "host"}]:
        fail(f"{what}: networks must be [{{'mode': 'host'}}], got {app.get('networks')}")
    return f"one per agent (hostname UNIQUE), role {roles}, host network, port {port}, /-/healthy, /-/ready"


def marathon_check(version, arch):
    """The tarball app: fetches the release tarball and runs its binary from a shell cmd."""
    app = marathon_app("shuffle-janitor-tarball.json")
    config = app["env"]["SHUFFLE_JANITOR_CONFIG"]
    what = "marathon (tarball)"
    summary = marathon_common(app, config, what)
    name = f"shuffle-janitor-{version}.linux-{arch}"
    uris = [f["uri"] for f in app.get("fetch", [])]
    if not any(u.endswith(f"/{name}.tar.gz") for u in uris):
        fail(f"{what}: no fetch URI ends in /{name}.tar.gz (Cargo.toml's version): {uris}")
    if f"$MESOS_SANDBOX/{name}/shuffle-janitor" not in app["cmd"]:
        fail(f"{what}: cmd does not run $MESOS_SANDBOX/{name}/shuffle-janitor")
    if "$SHUFFLE_JANITOR_CONFIG" not in app["cmd"]:
        fail(f"{what}: cmd does not write $SHUFFLE_JANITOR_CONFIG")
    ok(f"{what}: {summary}, fetches {name}.tar.gz")


MESOS_SANDBOX = "/mnt/mesos/sandbox"


def marathon_image_check(version):
    """The image app (deploy/marathon/shuffle-janitor.json): the image the DaemonSet runs, by the
    Universal Container Runtime, its config fetched into the sandbox, the roots and state_dir as
    host path volumes. Its config is deploy/marathon/config.toml."""
    app = marathon_app("shuffle-janitor.json")
    what = "marathon (image)"
    config_text = (DEPLOY / "marathon/config.toml").read_text()
    config = tomllib.loads(config_text)
    summary = marathon_common(app, config_text, what)
    c = app.get("container") or {}
    if c.get("type") != "MESOS":
        fail(f"{what}: container.type must be MESOS (the Universal Container Runtime), got {c.get('type')}")
    image = (c.get("docker") or {}).get("image")
    (ds,) = [d for d in k8s_docs() if d["kind"] == "DaemonSet"]
    (k8s,) = ds["spec"]["template"]["spec"]["containers"]
    if image != k8s["image"] or not image.endswith(f":{version}"):
        fail(f"{what}: image {image} is not the DaemonSet's {k8s['image']} tagged {version}")
    if "cmd" in app:
        fail(f"{what}: a cmd runs /bin/sh -c, and the image has no shell: use args")
    args = app.get("args") or []
    if args[:1] != ["run"] or "--config" not in args:
        fail(f"{what}: args must be run --config ..., got {args}")
    # The DaemonSet's arguments but for the config's path.
    k8s_args = list(k8s["args"])
    k8s_args[k8s_args.index("--config") + 1] = args[args.index("--config") + 1]
    if args != k8s_args:
        fail(f"{what}: args {args} differ from the DaemonSet's {k8s['args']} beyond the config's path")
    # The config is the fetched file, in the sandbox as the container sees it.
    cfg_path = args[args.index("--config") + 1]
    fetched = [f for f in app.get("fetch", []) if f.get("destPath", f["uri"].rsplit("/", 1)[-1]) == "config.toml"]
    if cfg_path != f"{MESOS_SANDBOX}/config.toml" or len(fetched) != 1:
        fail(f"{what}: --config must be {MESOS_SANDBOX}/config.toml, fetched into the sandbox (destPath config.toml)")
    if fetched[0].get("extract") or fetched[0].get("executable") or fetched[0].get("cache"):
        fail(f"{what}: the config must be fetched as it is, not extracted, not executable, not cached")
    if app.get("user") != "root":
        fail(f"{what}: user must be root (the image's uid 0; see the Containerfile)")
    # Host path volumes at the same path inside, read-write.
    vols = c.get("volumes") or []
    for v in vols:
        if v.get("hostPath") != v.get("containerPath") or v.get("mode") != "RW":
            fail(f"{what}: volume {v} must mount a host path at the same path, RW")
        if any(ch in v["hostPath"] for ch in "*?[{"):
            fail(f"{what}: volume {v['hostPath']}: Mesos mounts paths, not globs")
    mounted = [v["containerPath"] for v in vols]
    # Every root matches a volume (a glob at least one), and every volume but state_dir is a root.
    used = set()
    for root in config.get("roots", ["/tmp"]):
        hits = [m for m in mounted if fnmatch.fnmatchcase(m, root) or under(root, m)]
        if not hits:
            fail(f"{what}: root {root} is no host path volume of the app (volumes: {mounted})")
        used.update(hits)
    state = config.get("state_dir", "/var/lib/shuffle-janitor")
    if state:
        if state not in mounted:
            fail(f"{what}: state_dir {state} is not a host path volume (volumes: {mounted})")
        used.add(state)
    if set(mounted) - used:
        fail(f"{what}: volumes {sorted(set(mounted) - used)} are neither a root nor state_dir")
    ok(f"{what}: {summary}, image {image} as the DaemonSet, args as the DaemonSet's but --config {cfg_path} "
       f"(fetched), volumes {mounted} cover roots {config.get('roots')} and state_dir")


def k8s_docs():
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes/daemonset.yaml").read_text()) if d]


def k8s_config(out):
    cms = [d for d in k8s_docs() if d["kind"] == "ConfigMap"]
    if len(cms) != 1 or "config.toml" not in cms[0].get("data", {}):
        fail("kubernetes: expected one ConfigMap with data config.toml")
    Path(out).write_text(cms[0]["data"]["config.toml"])


def fixed_prefix(glob):
    """The leading components of a root without glob characters."""
    parts = []
    for c in glob.split("/")[1:]:
        if any(ch in c for ch in "*?[{"):
            break
        parts.append(c)
    return "/" + "/".join(parts)


def under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def k8s_check(version):
    docs = k8s_docs()
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    ds = [d for d in docs if d["kind"] == "DaemonSet"]
    if len(ds) != 1:
        fail("kubernetes: expected one DaemonSet")
    ds = ds[0]
    spec = ds["spec"]["template"]["spec"]
    config = tomllib.loads(cm["data"]["config.toml"])
    (c,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}

    # The config comes from the ConfigMap, at the path the container is told to read.
    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1]
    cfg_dir = cfg_path.rsplit("/", 1)[0]
    if cfg_dir not in mounts or volumes[mounts[cfg_dir]["name"]].get("configMap", {}).get("name") != cm["metadata"]["name"]:
        fail(f"kubernetes: {cfg_dir} is not the ConfigMap {cm['metadata']['name']} mounted")
    # Every root is on a hostPath mount, at the same path as on the host.
    for root in config.get("roots", ["/tmp"]):
        prefix = fixed_prefix(root)
        hits = [m for m in mounts if under(prefix, m) and "hostPath" in volumes[mounts[m]["name"]]]
        if not hits:
            fail(f"kubernetes: root {root} is not below a hostPath mount (mounts: {sorted(mounts)})")
        m = max(hits, key=len)
        host = volumes[mounts[m]["name"]]["hostPath"]["path"]
        if host != m:
            fail(f"kubernetes: {m} mounts the host's {host}: paths (and the root label) would differ")
    # The root filesystem is read-only: state_dir must be a writable hostPath, or the opens seen
    # before a restart are lost with the container.
    state = config.get("state_dir", "/var/lib/shuffle-janitor")
    if state:
        m = mounts.get(state)
        if not m or "hostPath" not in volumes[m["name"]] or m.get("readOnly"):
            fail(f"kubernetes: state_dir {state} is not a writable hostPath mount (mounts: {sorted(mounts)})")
    # Probes on metrics.listen's port.
    port = listen_port(cm["data"]["config.toml"])
    named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = c.get(probe, {}).get("httpGet", {})
        p = named.get(get.get("port"), get.get("port"))
        if get.get("path") != path or p != port:
            fail(f"kubernetes: {probe} must GET {path} on port {port}, got {get}")
    # Least privilege.
    sc = c.get("securityContext", {})
    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"]:
        fail("kubernetes: capabilities must drop ALL")
    want = {"DAC_OVERRIDE", "FOWNER"} | ({"SYS_PTRACE"} if config.get("skip_open_files", True) else set())
    if set(caps.get("add", [])) != want:
        fail(f"kubernetes: capabilities.add must be {sorted(want)}, got {caps.get('add')}")
    if config.get("skip_open_files", True) and not spec.get("hostPID"):
        fail("kubernetes: skip_open_files needs hostPID to see the executors' processes")
    for key, value in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        if sc.get(key) is not value:
            fail(f"kubernetes: securityContext.{key} must be {value}")
    if sc.get("privileged"):
        fail("kubernetes: must not be privileged")
    if not any(t.get("operator") == "Exists" and "key" not in t for t in spec.get("tolerations", [])):
        fail("kubernetes: no toleration for every taint (operator: Exists, no key)")
    if not c["image"].endswith(f":{version}"):
        fail(f"kubernetes: image {c['image']} is not tagged {version}")
    ok(f"kubernetes: roots {config.get('roots')} and state_dir on hostPath mounts, probes on {port}, "
       f"capabilities drop ALL add {sorted(want)}, hostPID, read-only root, tolerates all taints")


def dashboard_check(rules_out):
    """The dashboard imports anywhere (a datasource input) and its queries become a rules file
    for `promtool check rules` to parse."""
    d = json.loads((DEPLOY / "grafana/shuffle-janitor.json").read_text())
    inputs = d.get("__inputs", [])
    if not any(i.get("name") == "DS_PROMETHEUS" and i.get("type") == "datasource" and i.get("pluginId") == "prometheus" for i in inputs):
        fail("grafana: no __inputs entry DS_PROMETHEUS of type datasource, pluginId prometheus")
    exprs = []
    titles = []

    def visit(panels):
        for p in panels:
            visit(p.get("panels", []))
            if p.get("type") == "row":
                continue
            titles.append(p["title"])
            for obj in [p] + p.get("targets", []):
                ds = obj.get("datasource")
                if ds != {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}:
                    fail(f"grafana: panel {p['title']!r} uses datasource {ds}, not ${{DS_PROMETHEUS}}")
            for t in p.get("targets", []):
                exprs.append((p["title"], t["expr"]))

    visit(d["panels"])
    for v in d.get("templating", {}).get("list", []):
        if v.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            fail(f"grafana: variable {v['name']} does not use ${{DS_PROMETHEUS}}")
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        fail("grafana: duplicate panel ids")
    # A fleet row first, over every node of $job; every panel below it is per node ($instance),
    # so that 500 nodes are not 500 lines in every panel.
    fleet, nodes = fleet_and_node_panels(d)
    for p in fleet:
        for t in p.get("targets", []):
            if "$instance" in t["expr"]:
                fail(f"grafana: fleet panel {p['title']!r} is limited to $instance: {t['expr']}")
    for p in nodes:
        for t in p.get("targets", []):
            if 'instance=~"$instance"' not in t["expr"]:
                fail(f"grafana: per-node panel {p['title']!r} is not limited to $instance: {t['expr']}")
    fleet_exprs = " ".join(t["expr"] for p in fleet for t in p.get("targets", []))
    for what, pattern in [
        ("nodes above high", r'shuffle_janitor_filesystem_used_ratio.*>=.*level="high"'),
        ("nodes with unmet pressure", r"count\(max by \(job, instance\) \(shuffle_janitor_pressure_unmet"),
        ("top 10 nodes by oldest file age", r"topk\(10, max by \(instance\) \(shuffle_janitor_oldest_file_age_seconds"),
        ("top 10 nodes by tracked bytes", r"topk\(10, sum by \(instance\) \(shuffle_janitor_tracked_bytes"),
        ("reclaimed bytes per hour", r"rate\(shuffle_janitor_reclaimed_bytes_total[^)]*\)\) \* 3600"),
        ("version skew", r"count by \(version\) \(shuffle_janitor_build_info"),
    ]:
        if not re.search(pattern, fleet_exprs):
            fail(f"grafana: the fleet row has no panel for {what}")
    inst = [v for v in d.get("templating", {}).get("list", []) if v["name"] == "instance"]
    if not inst or inst[0].get("includeAll"):
        fail("grafana: $instance must not offer All (every node in every per-node panel)")
    want = ["reclaimed", "filesystem use", "oldest file age", "tracked bytes", "sweep duration", "errors"]
    for w in want:
        if not any(w in t.lower() for t in titles):
            fail(f"grafana: no panel about {w!r} (panels: {titles})")
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$job": ".*", "$instance": ".*"}
    rules = []
    for i, (title, e) in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        if "$" in e:
            fail(f"grafana: panel {title!r}: unknown variable in {e}")
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    ok(f"grafana: DS_PROMETHEUS input, {len(titles)} panels, {len(exprs)} queries (parsed next by promtool)")


def fleet_and_node_panels(d):
    """The panels of the first row (which must be titled Fleet), and those of the rows after it."""
    panels = d["panels"]
    if not panels or panels[0].get("type") != "row" or panels[0].get("title") != "Fleet":
        fail("grafana: the first row is not the Fleet row")
    rows = [i for i, p in enumerate(panels) if p.get("type") == "row"]
    end = rows[1] if len(rows) > 1 else len(panels)
    fleet = panels[1:end] + panels[0].get("panels", [])
    nodes = [p for p in panels[end:] if p.get("type") != "row"]
    for r in panels[end:]:
        nodes += r.get("panels", [])
    return fleet, nodes


def dashboard_fleet_test(rules_out, test_out):
    """The fleet row's queries as recording rules, and a promtool unit test of them on three
    nodes: a above its high watermark with pressure unmet, b quiet, c on another version and
    below its own (higher) watermark."""
    d = json.loads((DEPLOY / "grafana/shuffle-janitor.json").read_text())
    fleet, _ = fleet_and_node_panels(d)
    subst = {"$__rate_interval": "5m", "$job": ".*"}
    rules = []
    by_title = {}
    for p in fleet:
        for t in p.get("targets", []):
            e = t["expr"]
            for k, v in subst.items():
                e = e.replace(k, v)
            name = "fleet:" + re.sub(r"[^a-z0-9]+", "_", p["title"].lower()).strip("_")
            by_title[p["title"]] = name
            rules.append({"record": name, "expr": e})
    Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "fleet", "rules": rules}]}))
    j = 'job="sj"'
    a, b, c = (f'{j}, instance="{n}:19337"' for n in "abc")
    series = [
        (f'shuffle_janitor_build_info{{{a}, version="0.1.0"}}', "1x15"),
        (f'shuffle_janitor_build_info{{{b}, version="0.1.0"}}', "1x15"),
        (f'shuffle_janitor_build_info{{{c}, version="0.2.0"}}', "1x15"),
        (f'shuffle_janitor_filesystem_used_ratio{{{a}, mountpoint="/data1"}}', "0.9x15"),
        (f'shuffle_janitor_filesystem_used_ratio{{{a}, mountpoint="/data2"}}', "0.5x15"),
        (f'shuffle_janitor_filesystem_used_ratio{{{b}, mountpoint="/data1"}}', "0.5x15"),
        (f'shuffle_janitor_filesystem_used_ratio{{{c}, mountpoint="/data1"}}', "0.86x15"),
        (f'shuffle_janitor_watermark_ratio{{{a}, level="high"}}', "0.85x15"),
        (f'shuffle_janitor_watermark_ratio{{{b}, level="high"}}', "0.85x15"),
        (f'shuffle_janitor_watermark_ratio{{{c}, level="high"}}', "0.9x15"),
        (f'shuffle_janitor_watermark_ratio{{{a}, level="low"}}', "0.75x15"),
        (f'shuffle_janitor_pressure_unmet{{{a}, mountpoint="/data1"}}', "1x15"),
        (f'shuffle_janitor_pressure_unmet{{{a}, mountpoint="/data2"}}', "0x15"),
        (f'shuffle_janitor_pressure_unmet{{{b}, mountpoint="/data1"}}', "0x15"),
        (f'shuffle_janitor_oldest_file_age_seconds{{{a}, root="/data1"}}', "100x15"),
        (f'shuffle_janitor_oldest_file_age_seconds{{{a}, root="/data2"}}', "500x15"),
        (f'shuffle_janitor_oldest_file_age_seconds{{{b}, root="/data1"}}', "300x15"),
        (f'shuffle_janitor_oldest_file_age_seconds{{{c}, root="/data1"}}', "0x15"),
        (f'shuffle_janitor_tracked_bytes{{{a}, root="/data1", kind="shuffle"}}', "10x15"),
        (f'shuffle_janitor_tracked_bytes{{{a}, root="/data2", kind="temp"}}', "20x15"),
        (f'shuffle_janitor_tracked_bytes{{{b}, root="/data1", kind="shuffle"}}', "5x15"),
        (f'shuffle_janitor_tracked_bytes{{{c}, root="/data1", kind="shuffle"}}', "100x15"),
        # 60 bytes a minute on a and b: 7200 bytes an hour across the fleet.
        (f'shuffle_janitor_reclaimed_bytes_total{{{a}, reason="ttl"}}', "0+60x15"),
        (f'shuffle_janitor_reclaimed_bytes_total{{{b}, reason="ttl"}}', "0+60x15"),
        (f'up{{{a}}}', "1x15"),
        (f'up{{{b}}}', "1x15"),
        (f'up{{{c}}}', "0x15"),
    ]
    inst = lambda n: {"instance": f"{n}:19337"}
    want = {
        "Janitors up": [({}, 2)],
        "Janitors down": [({}, 1)],
        "Nodes above high": [({}, 1)],
        "Nodes with unmet pressure": [({}, 1)],
        "Versions running": [({}, 2)],
        "Top 10 nodes by oldest file age": [(inst("a"), 500), (inst("b"), 300), (inst("c"), 0)],
        "Top 10 nodes by tracked bytes": [(inst("a"), 30), (inst("b"), 5), (inst("c"), 100)],
        "Version skew": [({"version": "0.1.0"}, 2), ({"version": "0.2.0"}, 1)],
        "Reclaimed bytes per hour, fleet": [({"reason": "ttl"}, 7200)],
    }
    tests = []
    for title, samples in want.items():
        if title not in by_title:
            fail(f"grafana: no fleet panel {title!r} (fleet panels: {sorted(by_title)})")
        name = by_title[title]
        exp = []
        for labels, value in samples:
            lbl = ", ".join(f'{k}="{v}"' for k, v in sorted({"__name__": name, **labels}.items()) if k != "__name__")
            exp.append({"labels": f"{name}{{{lbl}}}" if lbl else name, "value": value})
        tests.append({"expr": name, "eval_time": "10m", "exp_samples": exp})
    Path(test_out).write_text(yaml.safe_dump({
        "rule_files": [Path(rules_out).name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
                   "promql_expr_test": tests}],
    }, sort_keys=False))
    ok(f"grafana: {len(tests)} fleet queries with expected values for three nodes (promtool test rules next)")


def exposition(path):
    """Metric family names in a Prometheus text exposition, and every sample name they give."""
    families, names = set(), set()
    for line in Path(path).read_text().splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            families.add(m.group(1))
            names.add(m.group(1))
            if m.group(2) in ("histogram", "summary"):
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return families, names


def used_names(text):
    return set(re.findall(r"\b(shuffle_janitor_[a-z_]+|process_[a-z_]+)\b", text))


def metrics_check(scrape):
    """Every metric the alerts, the dashboard and the README name is one the daemon exports,
    and the README's metrics table lists every shuffle_janitor_ metric it exports."""
    families, have = exposition(scrape)
    ours = {n for n in families if n.startswith("shuffle_janitor_")}
    if not ours:
        fail(f"{scrape}: no shuffle_janitor_ metric")
    sources = {
        "deploy/prometheus/alerts.yml": (DEPLOY / "prometheus/alerts.yml").read_text(),
        "deploy/grafana/shuffle-janitor.json": (DEPLOY / "grafana/shuffle-janitor.json").read_text(),
    }
    readme = (ROOT / "README.md").read_text()
    table = re.findall(r"^\| `(shuffle_janitor_[a-z_]+)`", readme, re.M)
    sources["README.md"] = "\n".join(table)
    for src, text in sources.items():
        missing = sorted(used_names(text) - have)
        if missing:
            fail(f"{src} uses metrics the daemon does not export: {missing}")
    undocumented = sorted(ours - set(table))
    if undocumented:
        fail(f"README.md's metrics table lacks {undocumented}")
    ok(f"alerts, dashboard and README use only exported metrics; README lists all {len(ours)} shuffle_janitor_ families")


def compare_config(effective, expected_json, who="ansible"):
    """check-config's effective settings equal the values given to the Ansible role (or, with
    WHO chef, the same values given to the Chef cookbook's template)."""
    eff = tomllib.loads(Path(effective).read_text())
    want = json.loads(Path(expected_json).read_text())
    pairs = {
        "roots": eff["roots"], "max_age": eff["max_age"], "min_age": eff["min_age"],
        "age_basis": eff["age_basis"], "kinds": eff["kinds"], "protect": eff["protect"],
        "interval": eff["interval"], "dry_run": eff["dry_run"], "skip_open_files": eff["skip_open_files"],
        "watermark_high": eff["watermark"]["high"], "watermark_low": eff["watermark"]["low"],
        "watermark_poll": eff["watermark"]["poll"], "metrics_listen": eff["metrics"]["listen"],
        "rescan_interval": eff["rescan_interval"], "state_dir": eff["state_dir"],
        "stores_reap": eff["stores"]["reap"], "stores_min_idle": eff["stores"]["min_idle"],
        "stores_executor_startup": eff["stores"]["executor_startup"],
    }
    for key, got in pairs.items():
        w = want["shuffle_janitor_" + key]
        if got != w:
            fail(f"{who}: {key} is {got!r} in the templated config, it was given {w!r}")
    ok(f"{who}: all {len(pairs)} keys of the templated config are the values given")


def argspec_defaults():
    """The Ansible role's meta/argument_specs.yml declares every variable of defaults/main.yml, with
    the same default (ansible-core checks types and choices from the spec, but takes the values
    from defaults/main.yml: the two must not drift apart)."""
    role = DEPLOY / "ansible/roles/shuffle_janitor"
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    options = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    if set(defaults) != set(options):
        fail(f"ansible: argument_specs and defaults/main.yml differ: only in defaults {sorted(set(defaults) - set(options))}, "
             f"only in argument_specs {sorted(set(options) - set(defaults))}")
    for name, spec in options.items():
        if "{{" in str(defaults[name]):
            if "default" in spec:
                fail(f"ansible: argument_specs gives {name} a default, defaults/main.yml computes it")
            continue
        if spec.get("default") != defaults[name]:
            fail(f"ansible: {name} defaults to {defaults[name]!r} in defaults/main.yml, {spec.get('default')!r} in argument_specs")
        for choice in [defaults[name]] if spec.get("type") == "str" else defaults[name] if spec.get("type") == "list" else []:
            if "choices" in spec and choice not in spec["choices"]:
                fail(f"ansible: {name}'s default {choice!r} is not one of its choices {spec['choices']}")
    ok(f"ansible: argument_specs declares the {len(options)} variables of defaults/main.yml with the same defaults")


COMMANDS = {
    "argspec-defaults": argspec_defaults,
    "parse-all": parse_all,
    "marathon-config": marathon_config,
    "marathon-check": marathon_check,
    "marathon-image-check": marathon_image_check,
    "k8s-config": k8s_config,
    "k8s-check": k8s_check,
    "dashboard-check": dashboard_check,
    "dashboard-fleet-test": dashboard_fleet_test,
    "metrics-check": metrics_check,
    "compare-config": compare_config,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail(f"usage: {sys.argv[0]} {'|'.join(COMMANDS)} ARGS...")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
