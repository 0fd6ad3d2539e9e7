//! A TCP forwarder on loopback that a test can close and open again: what a client sees of a
//! server that goes away (its connections cut, new ones closed at once) and comes back, while
//! the real server behind it keeps running.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct TcpGate {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    open: AtomicBool,
    stopping: AtomicBool,
    /// Both ends of every forwarded connection, to cut them when the gate closes.
    live: Mutex<Vec<TcpStream>>,
}

impl TcpGate {
    /// Forwards 127.0.0.1:(a free port) to `target`, open.
    pub fn start(target: SocketAddr) -> TcpGate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the gate");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            open: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let accept = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if !accept.open.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                accept.track(&client, &server);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        TcpGate { addr, shared }
    }

    /// `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every forwarded connection and closes new ones at once.
    pub fn close(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        for stream in self.shared.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again.
    pub fn open(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    fn track(&self, a: &TcpStream, b: &TcpStream) {
        let mut live = self.live.lock().unwrap();
        live.extend(a.try_clone().ok());
        live.extend(b.try_clone().ok());
    }
}

/// Copies `from` to `to` on a thread until either side ends.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.close();
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(self.addr);
    }
}
