//! A PgBouncer of the test's own (Debian's 1.18, which scripts/test installs) in front of a
//! Postgres server, in transaction mode with a pool small enough that clients share server
//! sessions between transactions, as they do in production. Run as the postgres user (it
//! refuses root), on a free port, removed on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use uuid::Uuid;

use super::cluster::{as_postgres, end_group, is_root};
use super::ports::{await_listening, free_port};

pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PgBouncer {
    /// In front of the server at `host:port`, every database by its own name.
    pub fn start(host: &str, port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("agent-api-pgbouncer-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = free_port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={host} port={port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\npidfile = {pid}\n",
                users = dir.join("users.txt").display(),
                log = dir.join("pgbouncer.log").display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )
        .unwrap();
        if is_root() {
            let _ = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&dir)
                .status();
        }
        let child = as_postgres("pgbouncer")
            .process_group(0)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer (scripts/test installs it)");
        await_listening(listen, "pgbouncer");
        Self {
            child,
            dir,
            port: listen,
        }
    }

    /// `url` with its host and port replaced by PgBouncer's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let credentials = authority
            .rsplit_once('@')
            .map(|(credentials, _)| format!("{credentials}@"))
            .unwrap_or_default();
        format!("{scheme}://{credentials}127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        end_group(&mut self.child, "-TERM");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
