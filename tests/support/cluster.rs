//! A Postgres cluster of the test's own, for the tests that stop, pause or break a database:
//! never the shared server. Created in a temporary directory on a free port, removed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use uuid::Uuid;

use super::ports::free_port;

/// A Postgres cluster of the test's own in a temporary directory, on a free port.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Whether it serves TLS (`server.crt`, `server.key` in its directory).
    tls: bool,
}

impl Cluster {
    /// A new, empty cluster (not started).
    pub fn create() -> Self {
        let cluster = Self::empty_directory();
        run(cluster
            .as_postgres("initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
            .arg(&cluster.dir));
        cluster
    }

    /// A hot standby of `primary` (started), streaming from it: `pg_basebackup -R`.
    pub fn standby_of(primary: &Cluster) -> Self {
        let standby = Self::empty_directory();
        run(standby
            .as_postgres("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "-R", "-c", "fast", "-D"])
            .arg(&standby.dir));
        standby.start();
        standby
    }

    fn empty_directory() -> Self {
        let bin = postgres_bin_dir();
        let dir = std::env::temp_dir().join(format!("agent-api-cluster-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let cluster = Self {
            bin,
            dir,
            port,
            tls: false,
        };
        give_to_postgres(&cluster.dir);
        // Postgres refuses a data directory others may read.
        run(Command::new("chmod").arg("700").arg(&cluster.dir));
        cluster
    }

    pub fn as_postgres(&self, program: &str) -> Command {
        as_postgres(self.bin.join(program))
    }

    /// Serves TLS with this certificate and key (PEM) from its next start.
    pub fn serve_tls(&mut self, cert: &str, key: &str) {
        for (file, pem) in [("server.crt", cert), ("server.key", key)] {
            std::fs::write(self.dir.join(file), pem).unwrap();
            run(Command::new("chmod").arg("600").arg(self.dir.join(file)));
            give_to_postgres(&self.dir.join(file));
        }
        self.tls = true;
    }

    pub fn start(&self) {
        let tls = match self.tls {
            true => " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            false => "",
        };
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{tls}",
            self.port,
            self.dir.display()
        );
        run(self
            .as_postgres("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-D"])
            .arg(&self.dir)
            .arg("start"));
    }

    /// `fast`: every session is disconnected at once, as in an operator's restart.
    pub fn stop(&self) {
        run(self
            .as_postgres("pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.dir)
            .arg("stop"));
    }

    /// Stops every process of the cluster without closing anything (`SIGSTOP`), as a frozen VM
    /// or a stalled disk does; `thaw` lets them run again.
    pub fn freeze(&self) {
        self.signal_all("-STOP");
    }

    pub fn thaw(&self) {
        self.signal_all("-CONT");
    }

    fn signal_all(&self, signal: &str) {
        let Ok(pid_file) = std::fs::read_to_string(self.dir.join("postmaster.pid")) else {
            return;
        };
        let postmaster = pid_file.lines().next().unwrap_or_default().to_string();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        // A child may have exited since it was listed.
        let _ = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.thaw();
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.dir)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program` run as the postgres user when the tests run as root: Postgres, and PgBouncer,
/// refuse to run as root.
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Makes `path` (and all below it) the postgres user's, when the tests run as root and so run
/// Postgres's programs as that user (`as_postgres`).
pub fn give_to_postgres(path: &std::path::Path) {
    if is_root() {
        run(Command::new("chown").arg("-R").arg("postgres").arg(path));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// Kills, with `signal`, a process started in a group of its own (`runuser` forks: its child
/// is in the group too), and reaps it.
pub fn end_group(process: &mut std::process::Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{}", process.id())])
        .status();
    let _ = process.wait();
}

/// `pg_ctl`'s directory: from PATH, else the newest /usr/lib/postgresql/*/bin.
pub fn postgres_bin_dir() -> PathBuf {
    if let Ok(output) = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        && output.status.success()
    {
        let path = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        return std::fs::canonicalize(path)
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (scripts/test installs them)")
        .map(|entry| entry.unwrap().path().join("bin"))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version")
}

pub fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
