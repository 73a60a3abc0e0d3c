//! Hostile and broken clients for the servers' tests and the hostile-load
//! benchmark: connections that stay idle, send half a request line, or
//! trickle a body in one byte at a time. Loopback only; every loop is
//! bounded by the connections it holds.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What each hostile connection does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Connects and sends nothing.
    Idle,
    /// Sends half a request's headers, then nothing.
    HalfHeaders,
    /// Sends a POST's headers promising 10,000 bytes, then one byte a
    /// second.
    SlowBody,
}

/// Connections held open against a server, closed on drop.
pub struct Hostile {
    streams: Arc<Mutex<Vec<(Attack, TcpStream)>>>,
    stop: Arc<AtomicBool>,
    trickle: Option<std::thread::JoinHandle<()>>,
    /// Connections the server refused or closed before they were set up.
    pub failed: usize,
}

/// Raises this process's open-file limit to `at_least` descriptors (as
/// root, the hard limit too), so that the test can hold thousands of
/// connections; panics when the machine does not allow it.
pub fn raise_own_open_files(at_least: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= at_least {
        return;
    }
    let hard = hard.max(at_least);
    setrlimit(Resource::RLIMIT_NOFILE, at_least, hard).unwrap_or_else(|e| {
        panic!("this test holds {at_least} connections and needs as many descriptors (soft {soft}): {e}")
    });
}

impl Hostile {
    /// Opens `count` connections to `addr`, each doing `attack`.
    pub fn open(addr: SocketAddr, attack: Attack, count: usize) -> Hostile {
        Self::mixed(addr, &[(attack, count)])
    }

    /// Opens connections of several kinds, interleaved, each connect
    /// given 2 s.
    pub fn mixed(addr: SocketAddr, kinds: &[(Attack, usize)]) -> Hostile {
        Self::mixed_within(addr, kinds, Duration::from_secs(2))
    }

    /// [`Hostile::mixed`] with each connect given `connect_timeout` (a
    /// server that stopped accepting makes every connect wait for it).
    pub fn mixed_within(
        addr: SocketAddr,
        kinds: &[(Attack, usize)],
        connect_timeout: Duration,
    ) -> Hostile {
        let mut plan = Vec::new();
        let most = kinds.iter().map(|(_, n)| *n).max().unwrap_or(0);
        for i in 0..most {
            for (attack, n) in kinds {
                if i < *n {
                    plan.push(*attack);
                }
            }
        }
        // Connected from 64 threads: a server that stops accepting makes
        // each connect wait for its timeout, which one thread would pay
        // thousands of times in a row.
        let chunks: Vec<Vec<Attack>> = plan
            .chunks(plan.len().div_ceil(64).max(1))
            .map(<[Attack]>::to_vec)
            .collect();
        let mut streams = Vec::with_capacity(plan.len());
        let mut failed = 0;
        let opened: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                std::thread::spawn(move || {
                    chunk
                        .into_iter()
                        .map(|attack| {
                            Self::connect(addr, attack, connect_timeout).map(|s| (attack, s))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in opened {
            for s in handle.join().unwrap() {
                match s {
                    Some(s) => streams.push(s),
                    None => failed += 1,
                }
            }
        }
        let streams = Arc::new(Mutex::new(streams));
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let streams = streams.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (attack, s) in streams.lock().unwrap().iter_mut() {
                        if *attack == Attack::SlowBody {
                            let _ = s.write_all(b"x");
                        }
                    }
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };
        Hostile {
            streams,
            stop,
            trickle: Some(trickle),
            failed,
        }
    }

    fn connect(addr: SocketAddr, attack: Attack, timeout: Duration) -> Option<TcpStream> {
        let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_write_timeout(Some(Duration::from_millis(200))).ok()?;
        let sent = match attack {
            Attack::Idle => Ok(()),
            Attack::HalfHeaders => s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "),
            Attack::SlowBody => s.write_all(
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{",
            ),
        };
        sent.ok().map(|()| s)
    }

    /// How many connections the server still holds open (a read that
    /// would block) among ours.
    pub fn still_open(&self) -> usize {
        let streams = self.streams.lock().unwrap();
        streams
            .iter()
            .filter(|(_, s)| {
                s.set_nonblocking(true).is_ok() && {
                    let mut b = [0u8; 1];
                    let open = matches!(
                        std::io::Read::read(&mut &*s, &mut b),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                    );
                    let _ = s.set_nonblocking(false);
                    open
                }
            })
            .count()
    }

    pub fn len(&self) -> usize {
        self.streams.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.trickle.take() {
            let _ = t.join();
        }
    }
}

/// Sends `request` (raw bytes) on a new connection and returns what the
/// server answered until it closed or `wait` passed.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}
