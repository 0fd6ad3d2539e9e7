//! The control socket's protocol: one JSON request per line, one JSON answer per line
//! (`{"ok": REPLY}`, the typed [`Reply`], or `{"error": "…"}`), then the connection closes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::reply::Reply;
use crate::service::Request;
use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

/// What a daemon answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Ok(Box<Reply>),
    Error(String),
}

/// Connects to a running daemon; `None` when none listens.
pub fn connect(socket: &Path) -> Option<UnixStream> {
    // A refused connection is not proof of a stale socket: a daemon starting now has bound
    // its socket and not yet listened on it. Only a daemon that holds the store lock removes
    // a socket left behind (unlinking it here once cut a starting daemon off for good).
    UnixStream::connect(socket).ok()
}

/// Sends a request and waits for the reply.
pub fn call(mut stream: UnixStream, request: &Request) -> Result<Reply> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).context("sending to the daemon")?;
    stream.shutdown(std::net::Shutdown::Write).ok();
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .context("reading the daemon's reply")?;
    if reply.is_empty() {
        return Err(anyhow!("the daemon closed the connection without replying"));
    }
    match serde_json::from_str(&reply).context("decoding the daemon's reply")? {
        Answer::Ok(reply) => Ok(*reply),
        Answer::Error(message) => Err(anyhow!(message)),
    }
}

/// Reads one request from a client.
pub fn read_request(stream: &UnixStream) -> Result<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).context("decoding a request")
}

pub fn write_answer(mut stream: &UnixStream, answer: &Answer) -> Result<()> {
    let mut line = serde_json::to_vec(answer)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    Ok(())
}
