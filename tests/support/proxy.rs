//! A TCP proxy on a free loopback port, which can be told to swallow every byte in both
//! directions while keeping its connections open: a firewall that silently drops a flow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    pub port: u16,
    swallowing: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallowing = Arc::new(AtomicBool::new(false));
        let flag = swallowing.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, flag.clone()));
                tokio::spawn(pump(server_read, client_write, flag.clone()));
            }
        });
        Self { port, swallowing }
    }

    /// From now on, nothing passes either way; nothing is closed either.
    pub fn swallow(&self) {
        self.swallowing.store(true, Ordering::SeqCst);
    }

    /// From now on, bytes pass again (what was swallowed is gone).
    pub fn pass(&self) {
        self.swallowing.store(false, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    swallowing: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) if !swallowing.load(Ordering::SeqCst) => {
                if to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

/// `url` with its host and port replaced by the proxy's.
pub fn through(url: &str, proxy: &Proxy) -> String {
    super::ports::on_local_port(url, proxy.port)
}

/// A proxy in front of the test database's server, and that database's URL through it.
pub async fn before_database(pool: &sqlx::PgPool) -> (Proxy, String) {
    let options = pool.connect_options();
    let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let url = through(&super::app::database_url(pool), &proxy);
    (proxy, url)
}
