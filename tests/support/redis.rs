//! A Redis server of the test's own on a free port (never the machine's shared one), removed
//! on drop; it can be paused (`SIGSTOP`) as a stalled server would be.

use std::process::{Child, Command, Stdio};

use super::ports::{await_listening, free_port};

pub struct Redis {
    child: Child,
    pub port: u16,
    arguments: Vec<String>,
}

impl Redis {
    pub fn start() -> Self {
        Self::spawn(|port| vec!["--port".into(), port.to_string()])
    }

    /// Speaking TLS only (its certificate and key, and the CA clients' would chain to), with
    /// the default user off and one ACL user (name, password) allowed everything.
    pub fn start_tls(cert: &str, key: &str, ca: &str, (user, password): (&str, &str)) -> Self {
        Self::spawn(|port| {
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                ca,
                "--tls-auth-clients",
                "no",
                "--user",
                "default",
                "off",
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "+@all",
            ]
            .map(String::from)
            .to_vec()
        })
    }

    /// On a free port, with `listening`'s arguments for it, on loopback and persisting nothing.
    fn spawn(listening: impl FnOnce(u16) -> Vec<String>) -> Self {
        let port = free_port();
        let mut arguments = listening(port);
        arguments.extend(
            [
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/tmp",
            ]
            .map(String::from),
        );
        let child = launch(&arguments);
        let redis = Self {
            child,
            port,
            arguments,
        };
        await_listening(port, "redis-server");
        redis
    }

    /// Stops it (killed: what it held is gone, as in a crash).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on its port, empty, after `stop`.
    pub fn restart(&mut self) {
        self.child = launch(&self.arguments);
        await_listening(self.port, "redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it answering without closing anything, as a stalled server does.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

fn launch(arguments: &[String]) -> Child {
    Command::new("redis-server")
        .args(arguments)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/test installs it)")
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Killed even when paused (SIGKILL needs no SIGCONT), or already stopped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
