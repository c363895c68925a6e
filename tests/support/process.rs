//! The `agent-api` binary as operators run it: a child process with a clean environment and
//! an explicit empty settings file (an operator's `config/agent-api.toml` or `.env` in the
//! checkout changes nothing), and a deadline past which it is killed and the test fails.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::app::{NO_SETTINGS_FILE, SECRET};

pub const BINARY: &str = env!("CARGO_BIN_EXE_agent-api");

/// How long a child may take to finish (a command) or to say it serves (`serve`).
pub const DEADLINE: Duration = Duration::from_secs(90);

/// The binary with a clean environment: only what the test passes, plus PATH, the secret and
/// the empty settings file.
pub fn agent_api(database_url: Option<&str>) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_CONFIG", NO_SETTINGS_FILE)
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
    let output = output_of(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `command` to its end, as `Command::output` does, within `DEADLINE`.
pub fn output_of(command: &mut Command) -> Output {
    let (status, stdout, stderr) = finished(command, DEADLINE);
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

/// `agent-api serve` as a child process, on free loopback ports.
pub struct Serving {
    pub child: Child,
    pub port: u16,
    pub ops_port: u16,
    /// Bytes the child has written to its log (stdout) so far.
    logged: Arc<AtomicUsize>,
    /// Its log's last lines (up to a few hundred KB).
    tail: Arc<Mutex<String>>,
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
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines are read on a thread of their own, so waiting for the start-up line has a
    // deadline: a child that never says it serves is killed, naming what it said last.
    let logged = Arc::new(AtomicUsize::new(0));
    let tail = Arc::new(Mutex::new(String::new()));
    let (started, start) = std::sync::mpsc::channel();
    let (counter, into) = (logged.clone(), tail.clone());
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        const KEPT: usize = 256 * 1024;
        let mut listening = Some(started);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ports) = listening.as_ref().and_then(|_| serving_ports(&line)) {
                let _ = listening.take().map(|started| started.send(ports));
            }
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
    let Ok((port, ops_port)) = start.recv_timeout(DEADLINE) else {
        let _ = child.kill();
        let status = child.wait();
        let mut said = tail.lock().unwrap().clone();
        let _ = child
            .stderr
            .take()
            .map(|mut pipe| pipe.read_to_string(&mut said));
        panic!(
            "agent-api serve did not say it serves within {DEADLINE:?} ({status:?}); its last line: {}",
            said.lines().last().unwrap_or("(none)")
        );
    };
    Serving {
        child,
        port,
        ops_port,
        logged,
        tail,
    }
}

/// The ports of `serve`'s start-up line (`agent-api serving`), if `line` is it.
fn serving_ports(line: &str) -> Option<(u16, u16)> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["fields"]["message"] != "agent-api serving" {
        return None;
    }
    let port = |field: &str| event["fields"][field].as_u64().map(|port| port as u16);
    Some((port("port")?, port("ops_port")?))
}

/// A child process killed when the test ends, or fails, so a stuck one never outlives it.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end, within `within`; its exit status, stdout and stderr. Past
/// `within` it is killed, and the test fails naming the last line it wrote.
pub fn finished(command: &mut Command, within: Duration) -> (ExitStatus, String, String) {
    let mut running = Running(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        let text = Arc::new(Mutex::new(Vec::new()));
        let into = text.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            let Some(mut pipe) = pipe else { return };
            while let Ok(read @ 1..) = pipe.read(&mut buffer) {
                into.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
        });
        (text, reader)
    };
    let child = &mut running.0;
    let (stdout, out_reader) = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let (stderr, err_reader) = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let text =
        |bytes: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned();
    let Some(status) = exit_within(child, within) else {
        let _ = child.kill();
        let _ = child.wait();
        let said = format!("{}{}", text(&stdout), text(&stderr));
        let last = said.lines().rev().find(|line| !line.trim().is_empty());
        panic!(
            "{command:?} was still running after {within:?}, killed; its last line: {}",
            last.unwrap_or("(none)")
        );
    };
    let _ = (out_reader.join(), err_reader.join());
    (status, text(&stdout), text(&stderr))
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
    exit_within(child, within).expect("the process did not exit")
}

fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
