//! Two Postgres nodes under Patroni (Debian's, with its Raft store and a Raft controller as the
//! third voter) configured by `deploy/patroni/patroni.yml`, and HAProxy in front sending
//! connections to the primary by Patroni's REST check (`deploy/patroni/haproxy.cfg`): as
//! operators run failover. Everything on free ports, as the postgres user, removed on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::cluster::{as_postgres, end_group, give_to_postgres, postgres_bin_dir, run};
use super::ports::{await_listening, free_port};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/patroni/patroni.yml");

/// The REST API's credentials and the Raft store's password, as the configuration requires.
pub const REST_USER: &str = "patroni-admin";
const REST_PASSWORD: &str = "rest-api-test-password";
const RAFT_PASSWORD: &str = "raft-test-password";
const HAPROXY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/patroni/haproxy.cfg");

struct Node {
    name: String,
    pg_port: u16,
    rest_port: u16,
    raft_port: u16,
    process: Option<Child>,
}

pub struct Patroni {
    dir: PathBuf,
    scope: String,
    nodes: Vec<Node>,
    controller: Child,
    /// The Raft controller's port: the third voter, so one node lost leaves a majority.
    controller_port: u16,
    haproxy: Child,
    /// Where DATABASE_URL points: HAProxy, in front of the primary.
    pub primary_port: u16,
    bin_dir: PathBuf,
}

impl Patroni {
    /// Two nodes, the first bootstrapped as primary, the second streaming from it; returns
    /// once both run and HAProxy reaches the primary.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("agent-api-patroni-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        give_to_postgres(&dir);
        let nodes: Vec<Node> = (1..=2)
            .map(|n| Node {
                name: format!("node{n}"),
                pg_port: free_port(),
                rest_port: free_port(),
                raft_port: free_port(),
                process: None,
            })
            .collect();
        let controller_port = free_port();
        let controller = as_postgres("patroni_raft_controller")
            .process_group(0)
            .arg(CONFIG)
            .envs(member_environment(
                &dir,
                "controller",
                controller_port,
                &voters(&nodes, controller_port, Some(controller_port)),
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("patroni (scripts/test installs it)");
        let mut patroni = Self {
            scope: format!("agent-api-{}", Uuid::new_v4().simple()),
            bin_dir: postgres_bin_dir(),
            primary_port: free_port(),
            haproxy: Command::new("true").spawn().unwrap(),
            controller,
            controller_port,
            nodes,
            dir,
        };
        patroni.start_node(0);
        patroni.await_role(0, "primary");
        patroni.start_node(1);
        patroni.await_role(1, "replica");
        patroni.await_streaming(1);
        let node = |n: usize| format!("127.0.0.1:{}", patroni.nodes[n].pg_port);
        patroni.haproxy = Command::new("haproxy")
            .args(["-f", HAPROXY])
            .env(
                "AGENT_API_PRIMARY_BIND",
                format!("127.0.0.1:{}", patroni.primary_port),
            )
            .env("AGENT_API_NODE1", node(0))
            .env("AGENT_API_NODE2", node(1))
            .env(
                "AGENT_API_NODE1_REST",
                patroni.nodes[0].rest_port.to_string(),
            )
            .env(
                "AGENT_API_NODE2_REST",
                patroni.nodes[1].rest_port.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test installs it)");
        await_listening(patroni.primary_port, "haproxy");
        // HAProxy counts every server up until its checks say otherwise: wait until they have.
        patroni.await_haproxy_on_primary();
        patroni
    }

    /// Waits until every connection through HAProxy reaches a primary.
    pub fn await_haproxy_on_primary(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut in_a_row = 0;
        while in_a_row < 6 {
            let primary = Command::new("psql")
                .args(["-Atc", "select pg_is_in_recovery()"])
                .arg(self.primary_url())
                .output()
                .is_ok_and(|out| out.stdout.starts_with(b"f"));
            in_a_row = if primary { in_a_row + 1 } else { 0 };
            assert!(
                Instant::now() < deadline,
                "HAProxy never settled on the primary"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of node `n`'s Postgres itself.
    pub fn node_url(&self, n: usize) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.nodes[n].pg_port
        )
    }

    /// DATABASE_URL: HAProxy, in front of whichever node is the primary.
    pub fn primary_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.primary_port
        )
    }

    /// Node `n`'s REST API.
    pub fn rest_url(&self, n: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.nodes[n].rest_port)
    }

    /// The node whose REST API says it is the primary, if one does.
    pub fn primary(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&n| self.role_is(n, "primary"))
    }

    /// Starts (or starts again) node `n`'s Patroni, which starts its Postgres: a node that was
    /// primary rejoins as a standby of the new one, rewound to its timeline.
    pub fn start_node(&mut self, n: usize) {
        let node = &self.nodes[n];
        let data = self.dir.join(format!("{}-data", node.name));
        // Where its REST API and its Postgres listen, and are reached from the others.
        let addresses = [("RESTAPI", node.rest_port), ("POSTGRESQL", node.pg_port)]
            .into_iter()
            .flat_map(|(part, port)| {
                ["LISTEN", "CONNECT_ADDRESS"].map(|what| {
                    (
                        format!("PATRONI_{part}_{what}"),
                        format!("127.0.0.1:{port}"),
                    )
                })
            });
        let process = as_postgres("patroni")
            .process_group(0)
            .arg(CONFIG)
            .envs(member_environment(
                &self.dir,
                &node.name,
                node.raft_port,
                &voters(&self.nodes, self.controller_port, Some(node.raft_port)),
            ))
            .env("PATRONI_SCOPE", &self.scope)
            .env("PATRONI_NAME", &node.name)
            .envs(addresses)
            .env("PATRONI_POSTGRESQL_DATA_DIR", &data)
            .env(
                "PATRONI_POSTGRESQL_PGPASS",
                self.dir.join(format!("{}.pgpass", node.name)),
            )
            .env("PATRONI_POSTGRESQL_BIN_DIR", &self.bin_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("patroni (scripts/test installs it)");
        self.nodes[n].process = Some(process);
    }

    /// Waits until node `n`'s REST API says it is `role` (`primary`, `replica`).
    pub fn await_role(&self, n: usize, role: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.role_is(n, role) {
            assert!(
                Instant::now() < deadline,
                "node{} never became {role}",
                n + 1
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn role_is(&self, n: usize, role: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/{role}", self.nodes[n].rest_port);
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "1",
                &url,
            ])
            .output()
            .is_ok_and(|out| out.stdout == b"200")
    }

    /// Waits until node `n` streams WAL from the primary.
    pub fn await_streaming(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let streaming = Command::new("psql")
                .args([
                    "-Atc",
                    "select count(*) from pg_stat_wal_receiver where status = 'streaming'",
                ])
                .arg(self.node_url(n))
                .output()
                .is_ok_and(|out| out.stdout.starts_with(b"1"));
            if streaming {
                return;
            }
            assert!(Instant::now() < deadline, "node{} never streamed", n + 1);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A planned switchover to node `to`.
    pub fn switchover(&self, to: usize) {
        let from = self.primary().expect("a primary");
        run(as_postgres("patronictl")
            .arg("-c")
            .arg(CONFIG)
            .envs(member_environment(
                &self.dir,
                "ctl",
                0,
                &voters(&self.nodes, self.controller_port, None),
            ))
            .env("PATRONI_SCOPE", &self.scope)
            .args(["switchover", "--leader", &self.nodes[from].name])
            .args(["--candidate", &self.nodes[to].name, "--force"]));
    }

    /// The postmaster of node `n` killed (SIGKILL), its Patroni left running.
    pub fn kill_postmaster(&self, n: usize) {
        let pid = self.postmaster_pid(n);
        run(Command::new("kill").args(["-KILL", &pid]));
    }

    /// Node `n` gone at once: its Patroni and its Postgres killed (SIGKILL), as a host lost.
    pub fn kill_node(&mut self, n: usize) {
        let pid = self.postmaster_pid(n);
        if let Some(mut patroni) = self.nodes[n].process.take() {
            end_group(&mut patroni, "-KILL");
        }
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }

    /// Stops WAL reaching standby `n` (its receiver frozen, its sender on the primary ended),
    /// so commits on the primary from now on exist there alone.
    pub fn cut_replication(&self, n: usize) {
        let receiver = self.wal_receiver_pid(n);
        run(Command::new("kill").args(["-STOP", &receiver]));
        let primary = self.primary().expect("a primary");
        run(Command::new("psql")
            .args([
                "-qc",
                "select pg_terminate_backend(pid) from pg_stat_replication",
            ])
            .arg(self.node_url(primary)));
    }

    /// Lets standby `n`'s WAL receiver run again.
    pub fn thaw_replication(&self, n: usize) {
        let receiver = self.wal_receiver_pid(n);
        let _ = Command::new("kill").args(["-CONT", &receiver]).status();
    }

    fn wal_receiver_pid(&self, n: usize) -> String {
        let out = Command::new("pgrep")
            .args(["-P", &self.postmaster_pid(n), "-f", "walreceiver"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn postmaster_pid(&self, n: usize) -> String {
        let data = self.dir.join(format!("{}-data", self.nodes[n].name));
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
        pid_file.lines().next().unwrap().to_string()
    }
}

/// The Raft voters' addresses (both nodes and the controller), but `except`'s own.
fn voters(nodes: &[Node], controller_port: u16, except: Option<u16>) -> Vec<String> {
    nodes
        .iter()
        .map(|node| node.raft_port)
        .chain([controller_port])
        .filter(|&port| Some(port) != except)
        .map(|port| format!("127.0.0.1:{port}"))
        .collect()
}

/// What every member (and `patronictl`) is given: the secrets, its own Raft address (none for
/// `patronictl`), its partners', and a data directory of its own.
fn member_environment(
    dir: &std::path::Path,
    member: &str,
    port: u16,
    partners: &[String],
) -> Vec<(String, String)> {
    let mut environment = vec![
        (
            "PATRONI_RAFT_PASSWORD".to_string(),
            RAFT_PASSWORD.to_string(),
        ),
        (
            "PATRONI_RESTAPI_USERNAME".to_string(),
            REST_USER.to_string(),
        ),
        (
            "PATRONI_RESTAPI_PASSWORD".to_string(),
            REST_PASSWORD.to_string(),
        ),
        (
            "PATRONI_RAFT_PARTNER_ADDRS".to_string(),
            format!("['{}']", partners.join("','")),
        ),
        (
            "PATRONI_RAFT_DATA_DIR".to_string(),
            dir.join(format!("{member}-raft"))
                .to_str()
                .unwrap()
                .to_string(),
        ),
    ];
    if port != 0 {
        environment.push(("PATRONI_RAFT_SELF_ADDR".into(), format!("127.0.0.1:{port}")));
    }
    environment
}

impl Drop for Patroni {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        for n in 0..self.nodes.len() {
            if let Some(mut patroni) = self.nodes[n].process.take() {
                end_group(&mut patroni, "-KILL");
            }
            let data = self.dir.join(format!("{}-data", self.nodes[n].name));
            let _ = as_postgres(self.bin_dir.join("pg_ctl"))
                .args(["-m", "immediate", "-D"])
                .arg(&data)
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        end_group(&mut self.controller, "-KILL");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
