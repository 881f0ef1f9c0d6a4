//! A small fault proxy between a virtual device and the server (TESTING.md, slow and torn
//! requests): it listens on a port of 127.0.0.1, takes one HTTP request per connection from the
//! device in full, and delivers it to the server damaged in one way:
//!
//! - [`Fault::SlowBody`]: the head at once, then the body a few bytes per interval (a phone on a
//!   bad line); whatever the server answers goes back to the device;
//! - [`Fault::CutBody`]: the head and part of the body, then both connections are closed (FIN);
//! - [`Fault::ResetBody`]: the head and part of the body, then both connections are reset (RST:
//!   `SO_LINGER` 0, then close);
//! - [`Fault::ResetResponse`]: the whole request; as soon as the server starts answering, both
//!   connections are reset, so the device never reads the answer (a lost answer).
//!
//! The proxy counts what it did, so a test can show that the fault really happened (the server
//! started answering before the reset; the slow connections were still open when another
//! request was served).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The head at once, then `bytes` bytes of body every `every`.
    SlowBody { bytes: usize, every: Duration },
    /// The head and the first `keep` bytes of the body, then close both sides.
    CutBody { keep: usize },
    /// The head and the first `keep` bytes of the body, then reset both sides.
    ResetBody { keep: usize },
    /// The whole request; reset both sides at the first byte of the answer.
    ResetResponse,
}

#[derive(Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicUsize,
    /// Connections being handled now.
    pub open: AtomicUsize,
    /// Body bytes delivered to the server, over all connections.
    pub body_bytes_sent: AtomicUsize,
    /// Connections whose body has begun to reach the server.
    pub bodies_started: AtomicUsize,
    /// Answers the server started and the proxy passed on to the device.
    pub answers_passed: AtomicUsize,
    /// Answers the server started and the proxy cut off with a reset.
    pub answers_reset: AtomicUsize,
    /// Connections the proxy closed or reset as its fault required.
    pub faults_done: AtomicUsize,
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy to `target` that applies `fault` to every connection.
    pub fn start(target: SocketAddr, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                s.open.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || {
                    // A failure here is the fault's own doing or the peer's; the test checks the
                    // outcome at the device and in the store.
                    let _ = handle(client, target, fault, &s);
                    s.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Proxy { addr, stats, stop }
    }

    pub fn open(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Closes `s` with a reset instead of a FIN.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one whole request (head and `Content-Length` bytes of body) from the device; returns
/// the bytes and where the body starts.
fn read_request(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, usize)> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(h) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= h + 4 + len {
                return Ok((buf, h + 4));
            }
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Passes whatever the server answers on to the device, until the server closes or stops
/// sending for a second.
fn pass_answer(first: &[u8], upstream: &mut TcpStream, client: &mut TcpStream) {
    let _ = client.write_all(first);
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 8192];
    while let Ok(n) = upstream.read(&mut buf) {
        if n == 0 || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn handle(
    mut client: TcpStream,
    target: SocketAddr,
    fault: Fault,
    stats: &Stats,
) -> std::io::Result<()> {
    let (req, body_at) = read_request(&mut client)?;
    let mut upstream = TcpStream::connect(target)?;
    upstream.set_nodelay(true)?;
    upstream.write_all(&req[..body_at])?;
    let body = &req[body_at..];
    match fault {
        Fault::SlowBody { bytes, every } => {
            upstream.set_read_timeout(Some(every))?;
            let mut buf = [0u8; 8192];
            let started = Instant::now();
            let mut sent = 0;
            // Stops at the server's answer, at an error (the server closed), or after a minute.
            while started.elapsed() < Duration::from_secs(60) {
                if sent < body.len() {
                    let to = (sent + bytes.max(1)).min(body.len());
                    if upstream.write_all(&body[sent..to]).is_err() {
                        break;
                    }
                    if sent == 0 {
                        stats.bodies_started.fetch_add(1, Ordering::SeqCst);
                    }
                    stats.body_bytes_sent.fetch_add(to - sent, Ordering::SeqCst);
                    sent = to;
                }
                match upstream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        stats.answers_passed.fetch_add(1, Ordering::SeqCst);
                        pass_answer(&buf[..n], &mut upstream, &mut client);
                        break;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        Fault::CutBody { keep } => {
            let keep = keep.min(body.len());
            upstream.write_all(&body[..keep])?;
            stats.body_bytes_sent.fetch_add(keep, Ordering::SeqCst);
            // Let the server read what arrived before the close.
            std::thread::sleep(Duration::from_millis(100));
            stats.faults_done.fetch_add(1, Ordering::SeqCst);
            drop(upstream);
            drop(client);
        }
        Fault::ResetBody { keep } => {
            let keep = keep.min(body.len());
            upstream.write_all(&body[..keep])?;
            stats.body_bytes_sent.fetch_add(keep, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            stats.faults_done.fetch_add(1, Ordering::SeqCst);
            reset(upstream);
            reset(client);
        }
        Fault::ResetResponse => {
            upstream.write_all(body)?;
            stats
                .body_bytes_sent
                .fetch_add(body.len(), Ordering::SeqCst);
            upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut first = [0u8; 1];
            if upstream.read(&mut first)? == 1 {
                stats.answers_reset.fetch_add(1, Ordering::SeqCst);
            }
            stats.faults_done.fetch_add(1, Ordering::SeqCst);
            reset(upstream);
            reset(client);
        }
    }
    Ok(())
}
