//! The `agent-api` binary as operators run it: a child process with a clean environment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::app::SECRET;

pub const BINARY: &str = env!("CARGO_BIN_EXE_agent-api");

/// The binary with a clean environment: only what the test passes, plus PATH and the secret.
pub fn agent_api(database_url: Option<&str>) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP__AUTH__JWT_SECRET", SECRET)
        .env("APP__LOG__LEVEL", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

/// Runs `command` to success and returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `agent-api serve` as a child process, on free loopback ports.
pub struct Serving {
    pub child: Child,
    pub port: u16,
    pub ops_port: u16,
    /// Bytes the child has written to its log (stdout) so far.
    logged: Arc<AtomicUsize>,
    /// Its log's last lines (up to a few hundred KB).
    tail: Arc<std::sync::Mutex<String>>,
}

/// A test that ends, or fails, takes its server down with it (and the server's sessions, so the
/// test's database can be dropped).
impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serving {
    pub fn logged_bytes(&self) -> usize {
        self.logged.load(Ordering::SeqCst)
    }

    /// The last lines of its log, once it has exited (or so far).
    pub fn log(&self) -> String {
        self.tail.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// `agent-api serve`, rate limits off unless `extra_env` says otherwise; returns once it logs
/// that it serves (its JSON start-up line, at `info`), not after a sleep.
pub fn spawn_serve(database_url: &str, extra_env: &[(&str, &str)]) -> Serving {
    let mut child = agent_api(Some(database_url))
        .env("APP__SERVER__HOST", "127.0.0.1")
        .env("APP__SERVER__PORT", "0")
        .env("APP__OPS__PORT", "0")
        .env("APP__RATE_LIMIT__ENABLED", "false")
        .envs(extra_env.iter().copied())
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (port, ops_port) = loop {
        let line = lines.next().expect("serve logs until it listens").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("logs are JSON lines");
        if event["fields"]["message"] == "agent-api serving" {
            let port = |field: &str| event["fields"][field].as_u64().unwrap() as u16;
            break (port("port"), port("ops_port"));
        }
    };
    let logged = Arc::new(AtomicUsize::new(0));
    let tail = Arc::new(std::sync::Mutex::new(String::new()));
    let (counter, into) = (logged.clone(), tail.clone());
    std::thread::spawn(move || {
        const KEPT: usize = 256 * 1024;
        for line in lines.map_while(Result::ok) {
            counter.fetch_add(line.len() + 1, Ordering::SeqCst);
            let mut tail = into.lock().unwrap();
            if tail.len() > KEPT {
                let cut = tail.len() - KEPT / 2;
                let cut = (cut..tail.len())
                    .find(|&i| tail.is_char_boundary(i))
                    .unwrap_or(0);
                tail.drain(..cut);
            }
            tail.push_str(&line);
            tail.push('\n');
        }
    });
    Serving {
        child,
        port,
        ops_port,
        logged,
        tail,
    }
}

/// A child process killed when the test ends, or fails, so a stuck one never outlives it.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end, within `within`; its exit status, stdout and stderr.
pub fn finished(command: &mut Command, within: Duration) -> (ExitStatus, String, String) {
    let mut running = Running(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_for_exit(&mut running.0, within);
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        pipe.map(|pipe| pipe.read_to_string(&mut text));
        text
    };
    let stdout = read(
        running
            .0
            .stdout
            .as_mut()
            .map(|p| p as &mut dyn std::io::Read),
    );
    let stderr = read(
        running
            .0
            .stderr
            .as_mut()
            .map(|p| p as &mut dyn std::io::Read),
    );
    (status, stdout, stderr)
}

/// Sends SIGTERM, as an orchestrator stopping the service does.
pub fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

pub fn wait_for_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
