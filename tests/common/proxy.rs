//! A TCP proxy between a client and the broker (both on 127.0.0.1) that records the client's
//! request frames and can cut every connection on demand, forcing real clients to retry, or
//! take the link down (every connection closed and refused) until healed: a network partition.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Proxy {
    pub addr: String,
    target: Arc<Mutex<String>>,
    generation: Arc<AtomicU64>,
    /// Client→broker frames (without the length prefix), in arrival order.
    pub frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        listener.set_nonblocking(true).expect("nonblocking");
        let p = Self {
            addr,
            target: Arc::new(Mutex::new(String::new())),
            generation: Arc::new(AtomicU64::new(0)),
            frames: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let (target, generation, frames, stop, down) = (
            p.target.clone(),
            p.generation.clone(),
            p.frames.clone(),
            p.stop.clone(),
            p.down.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if down.load(Ordering::Relaxed) {
                            drop(client);
                            continue;
                        }
                        let to = target.lock().expect("target").clone();
                        let Ok(server) = TcpStream::connect(&to) else {
                            continue;
                        };
                        let gen = generation.load(Ordering::Relaxed);
                        pipe(
                            client.try_clone().expect("clone"),
                            server.try_clone().expect("clone"),
                            generation.clone(),
                            gen,
                            Some(frames.clone()),
                        );
                        pipe(server, client, generation.clone(), gen, None);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        p
    }

    pub fn set_target(&self, addr: &str) {
        *self.target.lock().expect("target") = addr.to_string();
    }

    /// Closes every open connection (new ones are accepted as before).
    pub fn cut(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the link down: open connections closed, new ones refused until `heal`.
    pub fn take_down(&self) {
        self.down.store(true, Ordering::Relaxed);
        self.cut();
    }

    pub fn heal(&self) {
        self.down.store(false, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Copies `from` → `to` until either side closes or the generation moves on. With `record`, it
/// also splits the stream into frames and keeps them.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    generation: Arc<AtomicU64>,
    gen: u64,
    record: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
) {
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            if generation.load(Ordering::Relaxed) != gen {
                break;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                // Bytes read after a cut are dropped: a cut link carries nothing more.
                Ok(_) if generation.load(Ordering::Relaxed) != gen => break,
                Ok(n) => {
                    if let Some(frames) = &record {
                        pending.extend_from_slice(&buf[..n]);
                        while pending.len() >= 4 {
                            let len = i32::from_be_bytes([
                                pending[0], pending[1], pending[2], pending[3],
                            ]) as usize;
                            if pending.len() < 4 + len {
                                break;
                            }
                            frames
                                .lock()
                                .expect("frames")
                                .push(pending[4..4 + len].to_vec());
                            pending.drain(..4 + len);
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
