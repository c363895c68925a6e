//! A PgBouncer of the test's own (Debian's 1.18, which scripts/test installs) in front of a
//! Postgres server, configured by `deploy/pgbouncer.ini` (transaction mode) with the test's
//! addresses and a pool small enough that clients share server sessions between transactions,
//! as they do in production. Run as the postgres user (it
//! refuses root), on a free port, removed on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use uuid::Uuid;

use super::cluster::{as_postgres, end_group, give_to_postgres};
use super::ports::{await_listening, free_port, on_local_port};

pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PgBouncer {
    /// In front of the server at `host:port`, every database by its own name.
    pub fn start(host: &str, port: u16) -> Self {
        Self::start_with(host, port, &[])
    }

    /// The same, with these settings of `deploy/pgbouncer.ini` set otherwise.
    pub fn start_with(host: &str, port: u16, otherwise: &[(&str, String)]) -> Self {
        let dir = std::env::temp_dir().join(format!("agent-api-pgbouncer-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = free_port();
        let users = dir.join("users.txt");
        let roles = ["postgres".to_string()]
            .into_iter()
            .chain(super::roles::run_role_names());
        let users_file: String = roles.map(|role| format!("\"{role}\" \"\"\n")).collect();
        std::fs::write(&users, users_file).unwrap();
        let file = |name: &str| dir.join(name).display().to_string();
        let settings = [
            ("listen_addr", "127.0.0.1".to_string()),
            ("listen_port", listen.to_string()),
            // Few server sessions, so clients share them between transactions.
            ("default_pool_size", "2".into()),
            ("auth_type", "trust".into()),
            ("auth_file", file("users.txt")),
            ("logfile", file("pgbouncer.log")),
            ("pidfile", file("pgbouncer.pid")),
        ]
        .into_iter()
        .chain(otherwise.iter().cloned())
        .collect::<Vec<_>>();
        // Every database by its own name (each test has one), and no Unix socket: several
        // PgBouncers run at once.
        let ini = configured(&settings)
            .replace("\nagent_api = ", "\n* = ")
            .replace(
                "host=10.0.0.21 port=5432",
                &format!("host={host} port={port}"),
            )
            + "unix_socket_dir =\n";
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        give_to_postgres(&dir);
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
        on_local_port(url, self.port)
    }
}

/// `deploy/pgbouncer.ini` with the value of each setting named in `settings` replaced; every
/// one named must be there.
fn configured(settings: &[(&str, String)]) -> String {
    const DEPLOYED: &str = include_str!("../../deploy/pgbouncer.ini");
    let mut replaced = 0;
    let mut text = String::new();
    for line in DEPLOYED.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        match settings.iter().find(|(name, _)| *name == key) {
            Some((name, value)) => {
                replaced += 1;
                text.push_str(&format!("{name} = {value}\n"));
            }
            None => text.push_str(&format!("{line}\n")),
        }
    }
    assert_eq!(
        replaced,
        settings.len(),
        "deploy/pgbouncer.ini lacks a setting the test sets"
    );
    text
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        end_group(&mut self.child, "-TERM");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
