//! The metrics endpoint's web config file (`--web.config.file`), through the real binary: TLS
//! with a private CA, basic auth with a bcrypt hash, client certificates after a SIGHUP, and the
//! refusals a client must meet (no credentials, a wrong password, a CA that did not sign the
//! server, no client certificate). Certificates are made by `openssl` in the test's directory.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use rustix::process::{Pid, Signal, kill_process};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// Runs `openssl` with `args` in `dir`, or panics with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (Debian: openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca` (ca.crt, ca.key) in `dir`.
fn make_ca(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

/// A certificate `name` (name.crt, name.key) signed by `ca`, with `ext` (SAN, usage).
fn make_cert(dir: &Path, ca: &str, name: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// ca signs the server (localhost, 127.0.0.1); clients-ca signs the client; other-ca signs nothing.
fn make_pki(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "clients-ca");
    make_ca(dir, "other-ca");
    make_cert(
        dir,
        "ca",
        "server",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    make_cert(dir, "clients-ca", "client", "extendedKeyUsage=clientAuth\n");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }
}

struct Client {
    ca: &'static str,
    client_cert: bool,
    auth: Option<&'static str>,
}

/// Status and body of GET `url`; `Err` when no HTTP answer came (TLS refused, say).
fn get(pki: &Path, url: &str, c: &Client) -> Result<(u16, String), String> {
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let ca = Certificate::from_pem(&read(&format!("{}.crt", c.ca))).unwrap();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca]));
    if c.client_cert {
        let cert = Certificate::from_pem(&read("client.crt")).unwrap();
        let key = PrivateKey::from_pem(&read("client.key")).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(auth) = c.auth {
        let encoded = base64::engine::general_purpose::STANDARD.encode(auth);
        req = req.header("Authorization", format!("Basic {encoded}"));
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), body))
}

#[test]
fn tls_basic_auth_and_client_certificates_reloaded_on_sighup() {
    let env = TestEnv::new();
    let pki = env.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    // Cost 4 keeps the test fast; the file format is the same at any cost.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = pki.join("web.yml");
    // Relative file names: from the web config file's directory.
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    std::fs::write(&web, format!("{tls}basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    // The config's listen address is replaced by the flag, and its (absent) web config by the flag's.
    let config = env.config("state_dir = \"\"\n[metrics]\nlisten = \"127.0.0.1:1\"\n");
    let port = free_port();
    let log = env.dir.path().join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_shuffle-janitor"))
        .args(["run", "--log-level", "debug", "--config"])
        .arg(&config)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.config.file")
        .arg(&web)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the daemon");
    let d = Daemon { child, log };
    let https = format!("https://localhost:{port}/metrics");
    let good = Client {
        ca: "ca",
        client_cert: false,
        auth: Some("prometheus:s3cret"),
    };
    let start = Instant::now();
    while get(&pki, &https, &good).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no TLS answer; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get(&pki, &https, &good).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("shuffle_janitor_build_info"), "{body}");

    // Refused: no credentials, a wrong password, an unknown user (401); a CA that did not sign
    // the server (no HTTP at all); plain HTTP on the TLS port (no HTTP answer).
    for (what, c) in [
        (
            "no credentials",
            Client {
                ca: "ca",
                client_cert: false,
                auth: None,
            },
        ),
        (
            "wrong password",
            Client {
                ca: "ca",
                client_cert: false,
                auth: Some("prometheus:guess"),
            },
        ),
        (
            "unknown user",
            Client {
                ca: "ca",
                client_cert: false,
                auth: Some("root:s3cret"),
            },
        ),
    ] {
        let (status, body) = get(&pki, &https, &c).unwrap();
        assert_eq!(status, 401, "{what}: {body}");
        assert!(!body.contains("shuffle_janitor"), "{what}: {body}");
    }
    let wrong_ca = get(
        &pki,
        &https,
        &Client {
            ca: "other-ca",
            client_cert: false,
            auth: good.auth,
        },
    );
    assert!(wrong_ca.is_err(), "a client trusting another CA got {wrong_ca:?}");
    let plain = get(&pki, &format!("http://127.0.0.1:{port}/metrics"), &good);
    assert!(!matches!(plain, Ok((200, _))), "plain HTTP was served: {plain:?}");

    // SIGHUP: client certificates are now required (and verified against clients-ca).
    std::fs::write(
        &web,
        format!(
            "{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    kill_process(Pid::from_raw(d.child.id() as i32).unwrap(), Signal::HUP).unwrap();
    let with_cert = Client {
        ca: "ca",
        client_cert: true,
        auth: good.auth,
    };
    let start = Instant::now();
    while get(&pki, &https, &good).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a client without a certificate is still served after the reload; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get(&pki, &https, &with_cert).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(
        &pki,
        &https,
        &Client {
            auth: None,
            ..with_cert
        },
    )
    .unwrap();
    assert_eq!(status, 401, "a certificate does not replace the password");

    // A bad web config on SIGHUP is refused as a whole: the previous one stays in force.
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.crt\n").unwrap();
    kill_process(Pid::from_raw(d.child.id() as i32).unwrap(), Signal::HUP).unwrap();
    let start = Instant::now();
    while !d.log_text().contains("tls_server_config.key_file: is missing") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no refusal logged:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = get(
        &pki,
        &https,
        &Client {
            ca: "ca",
            client_cert: true,
            auth: good.auth,
        },
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        get(&pki, &https, &good).is_err(),
        "the refused file must not have replaced the good one"
    );
}

#[test]
fn bad_web_config_files_are_refused_naming_file_key_and_reason() {
    let env = TestEnv::new();
    let pki = env.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let web = pki.join("web.yml");
    let config = env.config("state_dir = \"\"\n");
    for (yaml, expected) in [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n",
            "tls_server_config.key_file:",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: clients-ca.crt\n",
            "tls_server_config.client_ca_file: is set, but client_auth_type is NoClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config.client_auth_type: (RequireAnyClientCert) accepts certificates nobody verified",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file: is missing",
        ),
        (
            "tls_server_config:\n  cert_file: web.yml\n  key_file: server.key\n",
            "tls_server_config.cert_file:",
        ),
    ] {
        std::fs::write(&web, yaml).unwrap();
        let out = env.run(&[
            "check-config",
            "--config",
            config.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: ", web.display())),
            "names the file: {stderr}"
        );
        assert!(stderr.contains(expected), "{yaml}: {stderr}");
    }
    // The same file named by the config key; a relative key is refused.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let keyed = env.config(&format!(
        "state_dir = \"\"\n[metrics]\nweb_config_file = {:?}\n",
        web.display().to_string()
    ));
    let out = env.run(&["check-config", "--config", keyed.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("web configuration OK") && stdout.contains("TLS, no authentication"),
        "{stdout}"
    );
    let relative = env.config("[metrics]\nweb_config_file = \"web.yml\"\n");
    let out = env.run(&["check-config", "--config", relative.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("metrics.web_config_file (\"web.yml\") must be an absolute path"),
        "{stderr}"
    );
    // (env.config rewrites the one config file: a good one again.)
    let config = env.config("state_dir = \"\"\n");
    let out = env.run(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--web.listen-address",
        "localhost",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("command line: --web.listen-address (\"localhost\") is not an address:port"),
        "{stderr}"
    );
}
