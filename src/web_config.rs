//! The metrics endpoint's web configuration file (`--web.config.file`, `metrics.web_config_file`),
//! in the Prometheus exporter toolkit's format, so that the file a fleet already templates for
//! node_exporter works here unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # relative paths: from the web config file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12               # TLS12 (default) or TLS13
//!   max_version: TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! TLS is rustls (TLS 1.2 and 1.3, ring's algorithms); passwords are checked with bcrypt. The
//! toolkit's keys that would weaken or that rustls cannot honour are refused by name, never
//! ignored: a security review must be able to trust that what the file says is what is served.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// A bad web config file: the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read the web config file: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a web config file (YAML, the Prometheus exporter toolkit's format): {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    // The toolkit's keys this implementation does not honour: accepted by the parser only so
    // that the refusal can say why, instead of "unknown field".
    #[serde(default)]
    cert: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    key: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    cipher_suites: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    curve_preferences: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    client_allowed_sans: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// HTTP/2 allowed: the server speaks HTTP/1.1, which every client (Prometheus included)
    /// falls back to, so either value is honoured.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<serde_yaml_ng::Value>,
}

/// The exporter toolkit's client authentication policies that verify what they accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// A loaded web configuration: the TLS server configuration (certificates read) and the users.
#[derive(Debug)]
pub struct WebConfig {
    /// The file it came from; `None`: plain HTTP, no authentication (no file configured).
    pub source: Option<PathBuf>,
    pub tls: Option<Arc<ServerConfig>>,
    pub client_auth: ClientAuth,
    users: BTreeMap<String, String>,
    /// `Authorization` header values that verified, so that a scrape every few seconds costs one
    /// bcrypt check, not one each (a bcrypt check is deliberately tens of milliseconds). Held
    /// only as long as this configuration is in force; a reload starts with none.
    verified: Mutex<HashSet<Vec<u8>>>,
}

/// At most this many verified credentials are remembered (then forgotten all at once): callers
/// with many different passwords cannot grow the daemon's memory.
const VERIFIED_CAP: usize = 64;

impl WebConfig {
    /// No file: plain HTTP, no authentication (the default).
    pub fn plain() -> WebConfig {
        WebConfig {
            source: None,
            tls: None,
            client_auth: ClientAuth::NoClientCert,
            users: BTreeMap::new(),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Reads and checks `path`, and the certificate and key files it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        WebConfig::from_yaml(&text, path)
    }

    /// Parses `text` as if read from `path` (relative file names are taken from its directory).
    pub fn from_yaml(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |key: &str, reason: String| WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_string(),
            reason,
        };
        // An empty file is a valid, empty configuration (as in the toolkit).
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| WebConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        if let Some(http) = &raw.http_server_config
            && http.headers.is_some()
        {
            return Err(invalid(
                "http_server_config.headers",
                "is not supported by shuffle-janitor (it sets no custom response headers); remove it".into(),
            ));
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    &key,
                    "a user name must be non-empty and contain no ':' (HTTP basic auth cannot send it)".into(),
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(
                    &key,
                    "is not a bcrypt hash ($2y$10$... as `htpasswd -nBC 10 USER` prints it); \
                     passwords are never written in clear"
                        .into(),
                ));
            }
        }
        let (tls, client_auth) = match raw.tls_server_config {
            None => (None, ClientAuth::NoClientCert),
            Some(t) => tls_config(&t, path, &invalid)?,
        };
        Ok(WebConfig {
            source: Some(path.to_owned()),
            tls,
            client_auth,
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether requests must carry a user and password.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// One line for the log: what is served.
    pub fn describe(&self) -> String {
        let tls = match (&self.tls, self.client_auth) {
            (None, _) => "plain HTTP".to_string(),
            (Some(_), ClientAuth::NoClientCert) => "TLS".to_string(),
            (Some(_), auth) => format!("TLS, client certificates {auth:?}"),
        };
        match self.users.len() {
            0 => format!("{tls}, no authentication"),
            n => format!("{tls}, basic auth ({n} users)"),
        }
    }

    /// Checks an `Authorization` header against the users. Blocking: a bcrypt check takes tens
    /// of milliseconds, call it off the async workers.
    pub fn check_basic_auth(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else { return false };
        if self.verified.lock().expect("not poisoned").contains(header) {
            return true;
        }
        let Some((user, password)) = parse_basic(header) else {
            return false;
        };
        let ok = match self.users.get(&user) {
            Some(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            None => {
                // An unknown user costs a bcrypt check too, so that response times do not tell
                // which users exist.
                if let Some(hash) = self.users.values().next() {
                    let _ = bcrypt::verify(&password, hash);
                }
                false
            }
        };
        if ok {
            let mut verified = self.verified.lock().expect("not poisoned");
            if verified.len() >= VERIFIED_CAP {
                verified.clear();
            }
            verified.insert(header.to_vec());
        }
        ok
    }
}

/// `Basic base64(user:password)` -> (user, password).
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn tls_config(
    t: &RawTls,
    path: &Path,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(Option<Arc<ServerConfig>>, ClientAuth), WebConfigError> {
    let key = |k: &str| format!("tls_server_config.{k}");
    for (name, given) in [("cert", t.cert.is_some()), ("key", t.key.is_some())] {
        if given {
            return Err(invalid(
                &key(name),
                format!("inline PEM is not supported by shuffle-janitor; put it in a file and use {name}_file"),
            ));
        }
    }
    for (name, given) in [
        ("cipher_suites", t.cipher_suites.is_some()),
        ("curve_preferences", t.curve_preferences.is_some()),
    ] {
        if given {
            return Err(invalid(
                &key(name),
                "is not supported by shuffle-janitor: rustls offers only its own modern suites and \
                 groups (AEAD ciphers, X25519 and the NIST curves); remove it"
                    .into(),
            ));
        }
    }
    if t.client_allowed_sans.is_some() {
        return Err(invalid(
            &key("client_allowed_sans"),
            "is not supported by shuffle-janitor; trust a CA that signs only the scrapers' certificates instead".into(),
        ));
    }
    // As in the toolkit: no certificate and no key means no TLS.
    match (t.cert_file.is_empty(), t.key_file.is_empty()) {
        (true, true) => {
            if !t.client_ca_file.is_empty() || !t.client_auth_type.is_empty() {
                return Err(invalid(
                    &key("cert_file"),
                    "is missing: client certificates need TLS; set cert_file and key_file".into(),
                ));
            }
            return Ok((None, ClientAuth::NoClientCert));
        }
        (true, false) => return Err(invalid(&key("cert_file"), "is missing (key_file is set)".into())),
        (false, true) => return Err(invalid(&key("key_file"), "is missing (cert_file is set)".into())),
        (false, false) => {}
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let resolve = |f: &str| dir.join(f);

    let version = |name: &str, v: &str, default: &'static rustls::SupportedProtocolVersion| match v {
        "" => Ok(default),
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(invalid(
            &key(name),
            format!("({v}) is not offered: TLS 1.0 and 1.1 are broken and rustls has neither; use TLS12 or TLS13"),
        )),
        other => Err(invalid(
            &key(name),
            format!("({other:?}) is not a TLS version; use TLS12 or TLS13"),
        )),
    };
    let min = version("min_version", &t.min_version, &rustls::version::TLS12)?;
    let max = version("max_version", &t.max_version, &rustls::version::TLS13)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match (min.version, max.version) {
        (rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2) => {
            return Err(invalid(&key("max_version"), "is below min_version".into()));
        }
        (rustls::ProtocolVersion::TLSv1_2, rustls::ProtocolVersion::TLSv1_2) => vec![&rustls::version::TLS12],
        (rustls::ProtocolVersion::TLSv1_3, _) => vec![&rustls::version::TLS13],
        _ => vec![&rustls::version::TLS12, &rustls::version::TLS13],
    };

    let cert_path = resolve(&t.cert_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(&key("cert_file"), format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            &key("cert_file"),
            format!("{}: holds no PEM certificate", cert_path.display()),
        ));
    }
    let key_path = resolve(&t.key_file);
    let private_key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        invalid(
            &key("key_file"),
            format!("{}: no PEM private key ({e})", key_path.display()),
        )
    })?;

    let client_auth = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        weak @ ("RequestClientCert" | "RequireAnyClientCert") => {
            return Err(invalid(
                &key("client_auth_type"),
                format!(
                    "({weak}) accepts certificates nobody verified, which the exporter toolkit itself calls \
                     insecure; use RequireAndVerifyClientCert with client_ca_file"
                ),
            ));
        }
        other => {
            return Err(invalid(
                &key("client_auth_type"),
                format!(
                    "({other:?}) is not a policy; use NoClientCert, VerifyClientCertIfGiven or \
                     RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match (client_auth, t.client_ca_file.is_empty()) {
        (ClientAuth::NoClientCert, true) => WebPkiClientVerifier::no_client_auth(),
        (ClientAuth::NoClientCert, false) => {
            // The toolkit would load the CA and then never ask for a certificate: refused, since
            // whoever wrote client_ca_file surely meant certificates to be checked.
            return Err(invalid(
                &key("client_ca_file"),
                "is set, but client_auth_type is NoClientCert, so no certificate would be checked; \
                 set client_auth_type: RequireAndVerifyClientCert"
                    .into(),
            ));
        }
        (_, true) => {
            return Err(invalid(
                &key("client_ca_file"),
                format!("is missing: client_auth_type {client_auth:?} verifies against it"),
            ));
        }
        (_, false) => {
            let ca_path = resolve(&t.client_ca_file);
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(&ca_path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| invalid(&key("client_ca_file"), format!("{}: {e}", ca_path.display())))?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(invalid(
                    &key("client_ca_file"),
                    format!("{}: holds no usable PEM CA certificate", ca_path.display()),
                ));
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| invalid(&key("client_ca_file"), format!("{}: {e}", ca_path.display())))?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(&key("min_version"), e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, private_key)
        .map_err(|e| {
            invalid(
                &key("key_file"),
                format!(
                    "{} with {}: {e} (does the key belong to the certificate?)",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
    // The toolkit's default (true): the server's order of cipher suites wins.
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Some(Arc::new(config)), client_auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(yaml: &str) -> String {
        match WebConfig::from_yaml(yaml, Path::new("/etc/sj/web.yml")) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_and_no_tls_serve_plain() {
        for yaml in ["", "\n", "basic_auth_users: {}\n", "tls_server_config: {}\n"] {
            let web = WebConfig::from_yaml(yaml, Path::new("/w.yml")).unwrap();
            assert!(web.tls.is_none() && !web.needs_auth(), "{yaml:?}");
        }
    }

    #[test]
    fn refusals_name_file_key_and_reason() {
        for (yaml, expected) in [
            (
                "tls_server_config:\n  cert_file: a.crt\n",
                "/etc/sj/web.yml: tls_server_config.key_file: is missing",
            ),
            (
                "tls_server_config:\n  key_file: a.key\n",
                "tls_server_config.cert_file: is missing",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
                "tls_server_config.min_version: (TLS10) is not offered",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS14\n",
                "tls_server_config.max_version: (\"TLS14\") is not a TLS version",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
                "tls_server_config.max_version: is below min_version",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "tls_server_config.cipher_suites: is not supported",
            ),
            (
                "tls_server_config:\n  cert: PEM\n",
                "tls_server_config.cert: inline PEM is not supported",
            ),
            (
                "tls_server_config:\n  client_ca_file: ca.crt\n",
                "tls_server_config.cert_file: is missing: client certificates need TLS",
            ),
            (
                "tls_server_config:\n  cert_file: /nonexistent/a.crt\n  key_file: b\n",
                "tls_server_config.cert_file: /nonexistent/a.crt:",
            ),
            (
                "basic_auth_users:\n  prometheus: secret\n",
                "basic_auth_users.prometheus: is not a bcrypt hash",
            ),
            (
                "basic_auth_users:\n  \"a:b\": x\n",
                "basic_auth_users.a:b: a user name must be non-empty",
            ),
            (
                "http_server_config:\n  headers: {X-Frame-Options: deny}\n",
                "http_server_config.headers: is not supported",
            ),
            ("tls_server_confg: {}\n", "unknown field `tls_server_confg`"),
            ("- a\n", "not a web config file"),
        ] {
            let e = refusal(yaml);
            assert!(e.starts_with("/etc/sj/web.yml: "), "{e}");
            assert!(e.contains(expected), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn relative_files_are_read_from_the_web_config_files_directory() {
        let e = refusal("tls_server_config:\n  cert_file: certs/a.crt\n  key_file: b\n");
        assert!(e.contains("/etc/sj/certs/a.crt"), "{e}");
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_remembers_successes() {
        // Cost 4, bcrypt's least, keeps the test fast; the daemon accepts any cost.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let web = WebConfig::from_yaml(&format!("basic_auth_users:\n  prom: '{hash}'\n"), Path::new("/w.yml")).unwrap();
        assert!(web.needs_auth());
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s)).into_bytes();
        assert!(web.check_basic_auth(Some(&basic("prom:s3cret"))));
        assert!(
            web.check_basic_auth(Some(&basic("prom:s3cret"))),
            "again, from the cache"
        );
        assert!(!web.check_basic_auth(Some(&basic("prom:wrong"))));
        assert!(!web.check_basic_auth(Some(&basic("other:s3cret"))));
        assert!(!web.check_basic_auth(Some(b"Bearer x")));
        assert!(!web.check_basic_auth(Some(b"Basic !!!")));
        assert!(!web.check_basic_auth(None));
        assert_eq!(web.verified.lock().unwrap().len(), 1, "only the success is remembered");
    }
}
