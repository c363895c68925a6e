//! A Prometheus server of the test's own (Debian's `prometheus`, which scripts/test installs),
//! scraping given targets every second and evaluating given rules every second; its HTTP API
//! queried as operators' dashboards and alert managers do. Removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use uuid::Uuid;

use super::ports::{await_listening, free_port};

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    port: u16,
    client: reqwest::Client,
}

impl Prometheus {
    /// Scrapes `targets` (host:port, `/metrics`) as job `agent-api`, with `rules` (a rule file's
    /// text) evaluated every second.
    pub fn start(targets: &[String], rules: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("agent-api-prometheus-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rules.yml"), rules).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"rules.yml\"]\n\
                 scrape_configs:\n  - job_name: agent-api\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/test installs it)");
        await_listening(port, "prometheus");
        Self {
            child,
            dir,
            port,
            client: reqwest::Client::new(),
        }
    }

    /// `GET /api/v1/<path>` with `query` parameters: its `data`, or the error it answered.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{}/api/v1/{path}", self.port),
            query,
        )
        .unwrap();
        let answer: Value = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match answer["status"].as_str() {
            Some("success") => Ok(answer["data"].clone()),
            _ => Err(answer.to_string()),
        }
    }

    /// The alerts firing now, by name.
    pub async fn firing(&self) -> Vec<String> {
        let alerts = self.api("alerts", &[]).await.unwrap();
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|alert| alert["state"] == "firing")
            .map(|alert| alert["labels"]["alertname"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
