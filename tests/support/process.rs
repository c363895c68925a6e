//! The `agent-api` binary as operators run it: a child process with a clean environment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// `agent-api serve` on a free loopback port, rate limits off; returns the child and its port
/// once it logs that it serves (its JSON start-up line), not after a sleep.
pub fn spawn_serve(database_url: &str, extra_env: &[(&str, &str)]) -> (Child, u16) {
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
    let port = loop {
        let line = lines.next().expect("serve logs until it listens").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("logs are JSON lines");
        if event["fields"]["message"] == "agent-api serving" {
            break event["fields"]["port"].as_u64().unwrap() as u16;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
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
