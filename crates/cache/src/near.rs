//! The near cache: a bounded in-process copy of values read from Redis, kept coherent by Redis itself
//! through server-assisted client-side caching (`CLIENT TRACKING ... BCAST`, RESP3 pushes).
//!
//! A hit saves the Redis round trip, which costs about a third of the database query it replaces. What
//! it must not cost is freshness, so a copy is served only when all of these hold:
//!
//! * The tracking link is up. Redis sends an `invalidate` push on it for every change of a value key
//!   under our prefix (writes, deletes, expiry, eviction) by any client. A writer of this crate returns
//!   only after a barrier that proves Redis has written those pushes to every tracking socket
//!   (`RedisStore::barrier`), so they are on this host before the writer can answer its own client.
//! * No push is waiting: the socket has no unread byte (a non-blocking `peek`) and the reader task holds
//!   no byte it has read but not applied (`holding`, set before each read and cleared after the bytes
//!   are applied; a reader checks the socket first and `holding` second, so no byte slips between).
//!   So a copy is never served after an invalidation that reached this host.
//! * Redis answered this link within [`SILENCE_LIMIT`]: a silent link may be a partition in which
//!   pushes are lost, so copies are not trusted for longer than that.
//!
//! This process's own writes drop their keys here synchronously, after Redis applied them, and any
//! break of the link (or Redis degraded) empties the near cache, since pushes may have been missed.
//! A read racing an invalidation cannot put its older value back: the read takes a [`Ticket`] (the
//! epochs of its key's shard and of the whole cache) before it asks Redis, and its value is stored only
//! if neither moved, checked under the shard lock the invalidation takes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use platform::backoff::Backoff;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::memory::{Entry, PerEntryTtl};
use crate::resp::{self, Frame};

const SHARDS: usize = 256;
/// How often the link is pinged; a pong also proves no push is stuck behind it.
const PING_EVERY: Duration = Duration::from_millis(50);
/// Copies are not served when Redis has been silent on the link this long; the link is then replaced.
const SILENCE_LIMIT: Duration = Duration::from_millis(250);
/// Bounds of the wait between reconnects, which doubles (with jitter) while the link keeps failing.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Where the tracking link connects and what it tracks.
#[derive(Clone)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The Redis-side prefix of value keys (`{key_prefix}c:`): what is tracked and stripped from pushes.
    pub value_prefix: String,
    pub connect_timeout: Duration,
}

/// What a read saw before it asked Redis; see the module comment.
pub(crate) struct Ticket {
    shard: usize,
    shard_epoch: u64,
    global_epoch: u64,
}

pub(crate) struct NearCache {
    entries: moka::sync::Cache<String, Entry>,
    /// Per shard of the key space: bumped by every invalidation of a key in it.
    shards: Box<[Mutex<u64>]>,
    /// Bumped by every flush (link up or down, `FLUSHALL`, recovery from degraded).
    global: AtomicU64,
    hasher: RandomState,
    /// A second handle on the tracking socket, for `peek`; `None` while the link is down.
    link: RwLock<Option<std::net::TcpStream>>,
    holding: AtomicBool,
    started: Instant,
    /// When Redis last answered on the link, in µs since `started`.
    heard_at: AtomicU64,
}

impl NearCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
            shards: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
            global: AtomicU64::new(0),
            hasher: RandomState::new(),
            link: RwLock::new(None),
            holding: AtomicBool::new(false),
            started: Instant::now(),
            heard_at: AtomicU64::new(0),
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        // The modulo keeps the index below SHARDS, so the cast cannot truncate a meaningful bit.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, u64> {
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now_micros(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn is_linked(&self) -> bool {
        self.link
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Whether every invalidation that reached this host has been applied (see the module comment).
    fn coherent(&self) -> bool {
        {
            let link = self.link.read().unwrap_or_else(PoisonError::into_inner);
            let Some(socket) = link.as_ref() else {
                return false;
            };
            match socket.peek(&mut [0u8; 1]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Bytes waiting, the peer closed, or an error: do not trust the copies now.
                _ => return false,
            }
        }
        if self.holding.load(Ordering::SeqCst) {
            return false;
        }
        let silent_for = self
            .now_micros()
            .saturating_sub(self.heard_at.load(Ordering::Acquire));
        silent_for <= SILENCE_LIMIT.as_micros() as u64
    }

    /// The local copy, if there is one and it may be served.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let entry = self.entries.get(key)?;
        self.coherent().then_some(entry.bytes)
    }

    /// Taken before asking Redis; `None` while the link is down (nothing read then may be kept).
    pub fn ticket(&self, key: &str) -> Option<Ticket> {
        if !self.is_linked() {
            return None;
        }
        let shard = self.shard_of(key);
        let shard_epoch = *self.shard(shard);
        Some(Ticket {
            shard,
            shard_epoch,
            global_epoch: self.global.load(Ordering::SeqCst),
        })
    }

    /// Keeps a value read from Redis with the TTL Redis had left, unless an invalidation or a flush
    /// happened since the ticket was taken.
    pub fn fill(&self, ticket: &Ticket, key: &str, bytes: Bytes, ttl: Duration) {
        let epoch = self.shard(ticket.shard);
        if *epoch != ticket.shard_epoch || self.global.load(Ordering::SeqCst) != ticket.global_epoch
        {
            return;
        }
        let entry = Entry {
            bytes,
            ttl,
            stored: Instant::now(),
        };
        self.entries.insert(key.to_owned(), entry);
    }

    /// Drops keys (cache keys, without the Redis prefix) and refuses reads of them that are in flight.
    pub fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        for key in keys {
            let mut epoch = self.shard(self.shard_of(key));
            *epoch += 1;
            self.entries.invalidate(key);
        }
    }

    /// Drops everything and refuses every read in flight. Holds every shard lock so no fill that
    /// checked the old global epoch can insert after the drop.
    pub fn flush(&self) {
        let _locks: Vec<MutexGuard<'_, u64>> = (0..SHARDS).map(|i| self.shard(i)).collect();
        self.global.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }

    fn heard(&self) {
        self.heard_at.store(self.now_micros(), Ordering::Release);
    }

    /// Tracking is on: start from empty (pushes before now were not seen), then serve copies.
    fn link_up(&self, socket: std::net::TcpStream) {
        self.flush();
        self.holding.store(false, Ordering::SeqCst);
        self.heard();
        *self.link.write().unwrap_or_else(PoisonError::into_inner) = Some(socket);
    }

    fn link_down(&self) {
        *self.link.write().unwrap_or_else(PoisonError::into_inner) = None;
        self.flush();
    }

    fn apply(&self, push: Vec<Frame>, value_prefix: &str) {
        let mut items = push.into_iter();
        if items.next() != Some(Frame::Bulk(b"invalidate".to_vec())) {
            return;
        }
        match items.next() {
            Some(Frame::Array(keys)) => {
                let keys: Vec<String> = keys
                    .into_iter()
                    .filter_map(|k| match k {
                        Frame::Bulk(k) => String::from_utf8(k).ok(),
                        _ => None,
                    })
                    .collect();
                self.forget(keys.iter().filter_map(|k| k.strip_prefix(value_prefix)));
            }
            // FLUSHALL / FLUSHDB: Redis names no keys, everything goes.
            _ => self.flush(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    #[error("no connection within the connect timeout")]
    ConnectTimeout,
    #[error("redis refused tracking: {0}")]
    Refused(String),
    #[error("redis closed the tracking connection")]
    Closed,
    #[error("no answer from redis for {0:?}")]
    Silent(Duration),
    #[error(transparent)]
    Protocol(#[from] resp::ProtocolError),
}

/// The background task behind a near cache: keeps one tracking link open, reconnecting with
/// [`Backoff`], and ends when the cache is dropped.
pub(crate) async fn track(near: Weak<NearCache>, target: Target) {
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    let mut reported = false;
    loop {
        let outcome = session(&near, &target, &mut backoff).await;
        let Some(cache) = near.upgrade() else {
            return;
        };
        cache.link_down();
        drop(cache);
        if let Err(e) = outcome {
            if reported {
                tracing::debug!(error = %e, "cache: near-cache link still down");
            } else {
                tracing::warn!(error = %e, "cache: near-cache link down, reads go to redis");
                reported = true;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn setup_commands(target: &Target) -> Vec<u8> {
    let mut hello = redis::cmd("HELLO");
    hello.arg(3);
    if let Some(password) = &target.password {
        hello
            .arg("AUTH")
            .arg(target.username.as_deref().unwrap_or("default"))
            .arg(password);
    }
    let mut out = hello.get_packed_command();
    out.extend(
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(&target.value_prefix)
            .get_packed_command(),
    );
    out
}

/// Reads until one whole frame is buffered (setup only: no push can arrive before tracking is on).
async fn next_frame(reader: &OwnedReadHalf, buf: &mut BytesMut) -> Result<Frame, LinkError> {
    loop {
        if let Some((frame, used)) = resp::parse(buf)? {
            buf.advance(used);
            return Ok(frame);
        }
        reader.readable().await?;
        match reader.try_read_buf(buf) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One connection's life: `Ok` when the cache was dropped, an error when the link failed.
async fn session(
    near: &Weak<NearCache>,
    target: &Target,
    backoff: &mut Backoff,
) -> Result<(), LinkError> {
    let connect = TcpStream::connect((target.host.as_str(), target.port));
    let stream = tokio::time::timeout(target.connect_timeout, connect)
        .await
        .map_err(|_| LinkError::ConnectTimeout)??;
    stream.set_nodelay(true)?;
    // `into_std` leaves the socket non-blocking, and the clone shares it: its `peek` never blocks.
    let socket = stream.into_std()?;
    let peeker = socket.try_clone()?;
    let (reader, mut writer) = TcpStream::from_std(socket)?.into_split();

    let mut buf = BytesMut::with_capacity(16 * 1024);
    writer.write_all(&setup_commands(target)).await?;
    let replies = async {
        for _ in 0..2 {
            if let Frame::Error(e) = next_frame(&reader, &mut buf).await? {
                return Err(LinkError::Refused(e));
            }
        }
        Ok(())
    };
    tokio::time::timeout(target.connect_timeout, replies)
        .await
        .map_err(|_| LinkError::Silent(target.connect_timeout))??;
    match near.upgrade() {
        Some(cache) => cache.link_up(peeker),
        None => return Ok(()),
    }
    backoff.reset();
    tracing::info!(prefix = %target.value_prefix, "cache: near-cache link up");

    let ping = redis::cmd("PING").get_packed_command();
    let mut ticks = tokio::time::interval(PING_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            ready = reader.readable() => {
                ready?;
                let Some(cache) = near.upgrade() else {
                    return Ok(());
                };
                // Before the read: from here until the bytes are applied, copies are not served.
                cache.holding.store(true, Ordering::SeqCst);
                match reader.try_read_buf(&mut buf) {
                    Ok(0) => return Err(LinkError::Closed),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
                while let Some((frame, used)) = resp::parse(&buf)? {
                    buf.advance(used);
                    match frame {
                        Frame::Push(push) => cache.apply(push, &target.value_prefix),
                        Frame::Error(e) => return Err(LinkError::Refused(e)),
                        _ => ping_sent = None,
                    }
                    cache.heard();
                }
                // A frame cut in two keeps `holding` set until its rest arrives.
                if buf.is_empty() {
                    cache.holding.store(false, Ordering::SeqCst);
                }
            }
            _ = ticks.tick() => {
                if near.strong_count() == 0 {
                    return Ok(());
                }
                match ping_sent {
                    Some(sent) if sent.elapsed() > SILENCE_LIMIT => {
                        return Err(LinkError::Silent(sent.elapsed()));
                    }
                    Some(_) => {}
                    None => {
                        writer.write_all(&ping).await?;
                        ping_sent = Some(Instant::now());
                    }
                }
            }
        }
    }
}
