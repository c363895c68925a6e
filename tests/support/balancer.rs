//! HAProxy with the repository's own configuration (`deploy/haproxy.cfg`) on a free port, in
//! front of two instances; removed on drop.

use std::process::{Child, Command, Stdio};

use super::ports::{await_listening, free_port};

pub struct Balancer {
    child: Child,
    pub port: u16,
}

impl Balancer {
    pub fn start(instance_ports: [u16; 2]) -> Self {
        let port = free_port();
        let config = format!("{}/deploy/haproxy.cfg", env!("CARGO_MANIFEST_DIR"));
        let child = Command::new("haproxy")
            .args(["-db", "-f", &config])
            .env("AGENT_API_BIND", format!("127.0.0.1:{port}"))
            .env("AGENT_API_A", format!("127.0.0.1:{}", instance_ports[0]))
            .env("AGENT_API_B", format!("127.0.0.1:{}", instance_ports[1]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test installs it)");
        let balancer = Self { child, port };
        await_listening(port, "haproxy");
        balancer
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
