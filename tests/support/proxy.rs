//! A TCP proxy on a free loopback port, which can be told to swallow every byte in both
//! directions while keeping its connections open (a firewall that silently drops a flow), or
//! to hold every byte a while each way (a long or congested path); it counts the chunks
//! clients send (a message, or messages written at once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct Proxy {
    pub port: u16,
    swallowing: Arc<AtomicBool>,
    delay: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallowing = Arc::new(AtomicBool::new(false));
        let delay = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let path = (swallowing.clone(), delay.clone());
        let counted = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pump(
                    client_read,
                    server_write,
                    path.clone(),
                    Some(counted.clone()),
                );
                pump(server_read, client_write, path.clone(), None);
            }
        });
        Self {
            port,
            swallowing,
            delay,
            sent,
        }
    }

    /// Chunks read from clients so far, over all connections.
    pub fn chunks_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// From now on, every byte read is passed on `delay` later, each way (zero: at once).
    pub fn delay(&self, delay: Duration) {
        self.delay.store(delay.as_millis() as u64, Ordering::SeqCst);
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

/// Copies `from` to `to` on two tasks: one reads, stamping each chunk with when it is due (or
/// dropping it while swallowing) and counting it in `counted`, the other writes each when
/// due, so a delay holds every chunk for that long without slowing the flow.
fn pump(
    mut from: impl AsyncReadExt + Unpin + Send + 'static,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
    (swallowing, delay): (Arc<AtomicBool>, Arc<AtomicU64>),
    counted: Option<Arc<AtomicU64>>,
) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if let Some(counted) = &counted {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            if swallowing.load(Ordering::SeqCst) {
                continue;
            }
            let held = Duration::from_millis(delay.load(Ordering::SeqCst));
            if chunks
                .send((Instant::now() + held, buffer[..read].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((when, chunk)) = due.recv().await {
            tokio::time::sleep_until(when).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
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
