//! [`Cut`]: a TCP proxy between the code under test and a shared server (PostgreSQL, RabbitMQ) that a test
//! can cut and restore, to stage an outage of that server without stopping it for everyone else using it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards every connection made to [`Cut::address`] to the target. [`Cut::cut`] drops every connection
/// it carries and closes each new one at once, as a server that went away would; [`Cut::restore`] forwards
/// new connections again. Stops when dropped.
pub struct Cut {
    address: SocketAddr,
    severed: watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
    accepting: JoinHandle<()>,
}

impl Cut {
    /// A proxy on a random 127.0.0.1 port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = crate::bind().await;
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let (severed, _) = watch::channel(false);
        let refused = Arc::new(AtomicUsize::new(0));
        let accepting = tokio::spawn(accept(listener, target, severed.clone(), refused.clone()));
        Self {
            address,
            severed,
            refused,
            accepting,
        }
    }

    /// Where the code under test should connect instead of the target.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Cuts every forwarded connection and refuses new ones (accepted and closed at once).
    pub fn cut(&self) {
        self.severed.send_replace(true);
    }

    /// Connections closed at once because they came while cut: how often the client tried to reconnect.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.severed.send_replace(false);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    severed: watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if *severed.borrow() {
            refused.fetch_add(1, Ordering::SeqCst);
            drop(inbound);
            continue;
        }
        let mut watch = severed.subscribe();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                // Dropping both ends closes them: the client sees its server go away mid-conversation.
                _ = watch.wait_for(|severed| *severed) => {}
            }
        });
    }
}
