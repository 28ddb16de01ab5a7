use super::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn cap_sys_ptrace_is_read_from_the_effective_set() {
    let proc = tempfile::tempdir().unwrap();
    std::fs::create_dir(proc.path().join("self")).unwrap();
    let status = |eff: &str| {
        let text = format!("Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t{eff}\n");
        std::fs::write(proc.path().join("self/status"), text).unwrap();
        has_cap_sys_ptrace(proc.path())
    };
    assert!(status("00000000a80c25fb"));
    assert!(!status("00000000a80425fb"));
    assert!(!status("garbage"));
}

fn cmd(args: &[&str]) -> Vec<u8> {
    args.iter().flat_map(|a| a.bytes().chain([0])).collect()
}

#[test]
fn command_lines_are_classified_and_unknown_jvms_may_be_drivers() {
    let exec = cmd(&[
        "/usr/lib/jvm/java-17/bin/java",
        "-cp",
        "/opt/spark/conf/:/opt/spark/jars/*",
        "-Xmx1024M",
        "org.apache.spark.executor.CoarseGrainedExecutorBackend",
        "--driver-url",
        "spark://CoarseGrainedScheduler@10.0.0.1:7078",
    ]);
    assert_eq!(classify(&exec, None, false), Some(Role::Executor));
    let k8s = cmd(&[
        "java",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
    ]);
    assert_eq!(classify(&k8s, None, false), Some(Role::Executor));
    let worker = cmd(&[
        "/usr/bin/java",
        "-cp",
        "/opt/spark/jars/*",
        "org.apache.spark.deploy.worker.Worker",
    ]);
    assert_eq!(classify(&worker, None, false), Some(Role::Service));
    let ess = cmd(&["java", "-cp", "x", "org.apache.spark.deploy.ExternalShuffleService"]);
    assert_eq!(classify(&ess, None, false), Some(Role::Service));
    assert_eq!(
        classify(&cmd(&["java", "kafka.Kafka", "server.properties"]), None, false),
        Some(Role::Service)
    );
    let submit = cmd(&[
        "java",
        "-cp",
        "/opt/spark/jars/*",
        "org.apache.spark.deploy.SparkSubmit",
        "pyspark-shell",
    ]);
    assert_eq!(classify(&submit, None, false), Some(Role::Driver));
    // Spark embedded with nothing on the command line that says so (the class path a
    // wildcard the JVM expands, an @argfile, a fat jar): a possible driver all the same.
    for embedded in [
        cmd(&["java", "-cp", "/opt/app/lib/*", "com.acme.ReportService"]),
        cmd(&["java", "@/etc/app/jvm.args"]),
        cmd(&["java", "-jar", "service.jar"]),
    ] {
        assert_eq!(classify(&embedded, None, false), Some(Role::Driver));
    }
    // A JVM renamed through argv[0] is still known by its executable.
    let renamed = cmd(&["report-service", "-cp", "x", "com.acme.Main"]);
    assert_eq!(
        classify(&renamed, Some(b"/usr/lib/jvm/java-17/bin/java"), false),
        Some(Role::Driver)
    );
    assert_eq!(classify(&renamed, None, false), None);
    assert_eq!(
        classify(
            &cmd(&["python3", "my_pyspark_job.py"]),
            Some(b"/usr/bin/python3.11"),
            false
        ),
        None
    );
    assert_eq!(classify(b"", None, false), None);
    // Known by libjvm.so mapped, whatever its name: jshell, a JNI host, a renamed launcher.
    let python = cmd(&["python3", "-c", "import jpype; jpype.startJVM()"]);
    assert_eq!(
        classify(&python, Some(b"/usr/bin/python3.11"), true),
        Some(Role::Driver)
    );
    assert_eq!(classify(&renamed, None, true), Some(Role::Driver));
    // Started through the dynamic loader: argv[0] and the executable are the loader's.
    let loaded = cmd(&[
        "/lib64/ld-linux-x86-64.so.2",
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        "-cp",
        "/opt/spark/jars/*",
        "org.apache.spark.executor.CoarseGrainedExecutorBackend",
    ]);
    let loader = Some(&b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"[..]);
    assert_eq!(
        classify(&loaded, loader, false),
        Some(Role::Executor),
        "by name, before libjvm is mapped"
    );
    assert_eq!(classify(&loaded, loader, true), Some(Role::Executor));
    assert_eq!(
        classify(&cmd(&["/lib64/ld-linux-x86-64.so.2", "/bin/ls"]), loader, false),
        None
    );
}

#[test]
fn the_java_launcher_is_found_behind_the_dynamic_loader() {
    let a = |v: &[&'static str]| v.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
    assert_eq!(launcher_start(&a(&["java", "-cp", "x", "M"]), None), Some(1));
    assert_eq!(launcher_start(&a(&["app", "M"]), Some(b"/opt/jdk/bin/java")), Some(1));
    assert_eq!(
        launcher_start(
            &a(&[
                "/lib/ld-linux-x86-64.so.2",
                "--library-path",
                "/l",
                "--inhibit-cache",
                "/jdk/bin/java",
                "M"
            ]),
            None
        ),
        Some(5)
    );
    assert_eq!(
        launcher_start(&a(&["ld-linux-aarch64.so.1", "/jdk/bin/java"]), None),
        Some(2)
    );
    assert_eq!(launcher_start(&a(&["ld-musl-x86_64.so.1", "/bin/sh"]), None), None);
    assert_eq!(launcher_start(&a(&["jshell", "--execution", "local"]), None), None);
    assert_eq!(
        short_command(&a(&[
            "/usr/bin/java",
            "-Xmx1g",
            "-cp",
            "/a:/b",
            "com.acme.Main",
            "--port",
            "80"
        ])),
        "java com.acme.Main 80"
    );
    let long = "x".repeat(300);
    assert_eq!(short_command(&[b"java", long.as_bytes()]).chars().count(), 100);
}

#[test]
fn a_jvm_is_known_by_the_libjvm_it_maps() {
    let hotspot = b"55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1311 /usr/lib/jvm/java-17-openjdk-amd64/bin/java\n\
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 \n\
7f3a2b200000-7f3a2b4ad000 r--p 00000000 08:01 1442 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n";
    assert!(maps_show_jvm(hotspot));
    // A JDK upgraded under a running JVM; a path with spaces; OpenJ9.
    assert!(maps_show_jvm(
        b"7f00-7f01 r-xp 00000000 08:01 9 /opt/jdk/lib/server/libjvm.so (deleted)\n"
    ));
    assert!(maps_show_jvm(
        b"7f00-7f01 r-xp 00000000 08:01 9 /opt/my jdk/lib/server/libjvm.so"
    ));
    assert!(maps_show_jvm(
        b"7f00-7f01 r-xp 00000000 08:01 9 /opt/j9/lib/default/libj9vm29.so\n"
    ));
    // Not a JVM: a library of a similar name, a file named so elsewhere on the line, nothing.
    for other in [
        &b"7f00-7f01 r-xp 00000000 08:01 9 /usr/lib/libjvmti_helper.so\n"[..],
        b"7f00-7f01 r-xp 00000000 08:01 9 /tmp/libjvm.so.txt\n",
        b"7f00-7f01 r-xp 00000000 08:01 9 [heap]\n",
        b"",
    ] {
        assert!(!maps_show_jvm(other), "{}", String::from_utf8_lossy(other));
    }
    // This test process maps no JVM.
    assert!(!maps_show_jvm(&std::fs::read("/proc/self/maps").unwrap()));
    // Its threads' names show a JVM whose map cannot be read.
    let names: [&[u8]; 3] = [b"java\n", b"GC Thread#0\n", b"VM Thread\n"];
    assert!(threads_show_jvm(names.into_iter()));
    let j9: [&[u8]; 2] = [b"main\n", b"JIT Compilation\n"];
    assert!(threads_show_jvm(j9.into_iter()));
    let other: [&[u8]; 3] = [b"process_api\n", b"tokio-rt-worker\n", b"VM\n"];
    assert!(!threads_show_jvm(other.into_iter()));
    let me = thread_names(Path::new("/proc/self")).unwrap();
    assert!(!threads_show_jvm(me.iter().map(Vec::as_slice)));
}

#[test]
fn the_stat_line_and_the_proc_mount_are_read_as_the_kernel_writes_them() {
    assert_eq!(stat_field(b"1 (a b) c) S 0 1 2", 4), Some("0"));
    // A command name that is not UTF-8 does not hide the fields after it.
    assert_eq!(stat_field(b"7 (j\xffv\xfe)) S 1 2 3", 5), Some("2"));
    let mountinfo = "22 1 0:5 / /proc rw,nosuid - proc proc rw\n\
                         30 22 0:40 / /proc rw,relatime - proc proc rw,hidepid=invisible\n\
                         31 1 0:41 / /sys rw - sysfs sysfs rw\n";
    assert_eq!(proc_mount_options(mountinfo), "rw,hidepid=invisible");
}

#[test]
fn the_record_of_steps_is_never_read_through_a_link_nor_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STEPS_FILE);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let cell = Mutex::new(None);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // A FIFO: an error at once (the stores are then not judged), never a hang.
    let err = steps_seen(&cell, Path::new("/proc"), Some(dir.path()), 1, 1).unwrap_err();
    assert!(
        err.contains("clock-steps.json") && err.contains("not a regular file"),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let err = steps_seen(&cell, Path::new("/proc"), Some(dir.path()), 1, 1).unwrap_err();
    assert!(err.contains("clock-steps.json"), "{err}");
    std::fs::remove_file(&path).unwrap();
    // Written anew, never through a link planted under the temporary name.
    std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{STEPS_FILE}.tmp"))).unwrap();
    steps_seen(&cell, Path::new("/proc"), Some(dir.path()), 1, 1).unwrap();
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_file());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

#[test]
fn a_step_of_the_boot_time_is_seen_and_kept_across_runs() {
    const S: i64 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let proc = Path::new("/proc");
    let seen = |state: Option<&Path>, btime, now| {
        // Each call is a run of its own: nothing held in memory.
        let cell = Mutex::new(None);
        steps_seen(&cell, proc, state, btime, now).unwrap()
    };
    assert_eq!(seen(Some(dir.path()), 1_000 * S, 500), 0);
    assert_eq!(
        seen(Some(dir.path()), 1_000 * S + S / 3, 600),
        0,
        "too small to be a step"
    );
    assert_eq!(seen(Some(dir.path()), 1_300 * S, 700), 700, "a step forward");
    assert_eq!(seen(Some(dir.path()), 1_300 * S, 800), 700, "remembered by the file");
    assert_eq!(seen(Some(dir.path()), 1_100 * S, 900), 900, "a step back");
    assert_eq!(seen(None, 1_100 * S, 950), 0, "nothing kept: nothing known");
    // Within one run, memory is enough.
    let cell = Mutex::new(None);
    assert_eq!(steps_seen(&cell, proc, None, 5_000 * S, 10).unwrap(), 0);
    assert_eq!(steps_seen(&cell, proc, None, 5_060 * S, 20).unwrap(), 20);
    // Steps too small to be seen one by one add up: the baseline does not follow them.
    let cell = Mutex::new(None);
    assert_eq!(steps_seen(&cell, proc, None, 7_000 * S, 10).unwrap(), 0);
    assert_eq!(steps_seen(&cell, proc, None, 7_000 * S + 6 * S / 10, 20).unwrap(), 0);
    assert_eq!(
        steps_seen(&cell, proc, None, 7_000 * S + 12 * S / 10, 30).unwrap(),
        30,
        "1.2 s in all"
    );
    assert_eq!(
        steps_seen(&cell, proc, None, 7_000 * S + 17 * S / 10, 40).unwrap(),
        30,
        "re-based at the step"
    );
    assert_eq!(steps_seen(&cell, proc, None, 7_000 * S + 23 * S / 10, 50).unwrap(), 50);
    // Across runs too, and from a file an earlier version wrote (whole seconds).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(STEPS_FILE),
        format!(
            "{{\"boot_id\":\"{}\",\"btime\":9000,\"suspect_before\":0}}",
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap()
                .trim()
        ),
    )
    .unwrap();
    assert_eq!(
        seen(Some(dir.path()), 9_000 * S + 7 * S / 10, 60),
        0,
        "within its second"
    );
    assert_eq!(
        seen(Some(dir.path()), 9_001 * S + 4 * S / 10, 70),
        0,
        "0.7 s from the baseline"
    );
    assert_eq!(seen(Some(dir.path()), 9_001 * S + 8 * S / 10, 80), 80, "1.1 s from it");
    // A record that cannot be trusted: what the clock did is unknown, so a step now.
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::write(dir.path().join(STEPS_FILE), b"{\"boot_id\":").unwrap();
    assert_eq!(seen(Some(dir.path()), 9_001 * S, 90), 90, "cut short");
    // One with numbers past every limit does not bring the sweep down.
    std::fs::write(
        dir.path().join(STEPS_FILE),
        format!(
            "{{\"boot_id\":\"{}\",\"btime\":9223372036,\"suspect_before\":0}}",
            boot_id.trim()
        ),
    )
    .unwrap();
    assert_eq!(seen(Some(dir.path()), 9_001 * S, 95), 95, "far from that baseline");
    // A record that cannot be kept is said: a later run would not know of this step.
    let gone = dir.path().join("no-such-dir");
    let cell = Mutex::new(None);
    let e = steps_seen(&cell, proc, Some(&gone), 9_001 * S, 99).unwrap_err();
    assert!(e.contains("no-such-dir") && e.contains("state_dir"), "{e}");
}

#[test]
fn an_executor_gets_the_window_its_own_timeouts_give() {
    let args = |a: &[&str]| a.iter().flat_map(|a| a.bytes().chain([0])).collect::<Vec<u8>>();
    let min = |m: u64| Some(std::time::Duration::from_secs(m * 60));
    let backend = "org.apache.spark.executor.CoarseGrainedExecutorBackend";
    let env = args(&["PATH=/usr/bin", "HOME=/home/spark"]);
    let w = |cmd: &[&str]| executor_window(&args(cmd), Some(&env));
    // Six lookups and two asks of 120 s.
    assert_eq!(w(&["java", backend]), min(16), "Spark's defaults");
    assert_eq!(w(&["java", "-Dspark.network.timeout=600s", backend]), min(80));
    assert_eq!(
        w(&[
            "java",
            "-Dspark.network.timeout=600",
            "-Dspark.rpc.askTimeout=15min",
            backend
        ]),
        min(6 * 10 + 2 * 15)
    );
    assert_eq!(
        w(&["java", "-Dspark.rpc.lookupTimeout=2h", backend]),
        min(6 * 120 + 2 * 2)
    );
    assert_eq!(w(&["java", "-Dspark.network.timeout=30000ms", backend]), min(4));
    // The longest of repeated settings.
    assert_eq!(
        w(&[
            "java",
            "-Dspark.network.timeout=600s",
            "-Dspark.network.timeout=60s",
            backend
        ]),
        min(80)
    );
    // A value it cannot read, or options it cannot see: no bound known.
    assert_eq!(w(&["java", "-Dspark.network.timeout=10 fortnights", backend]), None);
    assert_eq!(w(&["java", "-Dspark.rpc.askTimeout=", backend]), None);
    assert_eq!(w(&["java", "@/etc/spark/executor.args", backend]), None);
    assert_eq!(executor_window(&args(&["java", backend]), None), None);
    // Settings and retries from the environment.
    let env = args(&[
        "JAVA_TOOL_OPTIONS=-Xss4m -Dspark.network.timeout=600s",
        "EXECUTOR_DRIVER_PROPS_FETCHER_MAX_ATTEMPTS=5",
    ]);
    assert_eq!(
        executor_window(&args(&["java", backend]), Some(&env)),
        min(8 * 10 + 2 * 10)
    );
    let env = args(&["JDK_JAVA_OPTIONS=@/opt/args"]);
    assert_eq!(executor_window(&args(&["java", backend]), Some(&env)), None);
}

#[test]
fn this_process_is_judged_by_its_pid_namespace_not_by_what_proc_says() {
    // Here, the tests run in the namespace they were started in: the procfs is that one's.
    assert_eq!(procfs_is_own(Path::new("/proc")), Ok(()));
    let own_is_initial = std::fs::read_link("/proc/self/ns/pid")
        .is_ok_and(|l| l.to_str() == Some(&format!("pid:[{INITIAL_PID_NS_INO}]")));
    assert_eq!(in_node_pid_namespace(Path::new("/proc")).is_ok(), own_is_initial);
    // A directory that is not this namespace's procfs.
    let fake = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("1", fake.path().join("self")).unwrap();
    assert!(
        procfs_is_own(fake.path())
            .unwrap_err()
            .contains("another PID namespace")
    );
    assert!(blindness(fake.path(), PidNamespace::Own).is_some());
}

#[test]
fn a_process_working_in_a_directory_is_seen_and_this_one_is_not() {
    let held = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(held.path())
        .spawn()
        .unwrap();
    let procs = Procs::read(Path::new("/proc"), None);
    let _ = child.kill();
    let _ = child.wait();
    if let Some(why) = &procs.blind {
        eprintln!("SKIPPED a_process_working_in_a_directory_is_seen: {why}");
        return;
    }
    let m = std::fs::metadata(held.path()).unwrap();
    // Seen even while it may still be in the middle of its exec (no command line yet).
    assert!(procs.dirs_in_use.contains(&(m.dev(), m.ino())));
    assert!(procs.owners.iter().all(|o| o.pid != std::process::id()));
    let me = start_of(Path::new("/proc"), std::process::id()).unwrap();
    let now = crate::policy::nanos(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    );
    assert!(me <= now && me > now - 3_600_000_000_000, "{me} vs {now}");
}
