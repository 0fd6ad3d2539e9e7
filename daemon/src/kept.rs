//! The daemon's link to its keeper (`keeper`): a SOCK_SEQPACKET socket beside the daemon's
//! own, which the keeper listens on while its daemon runs. Each packet is one JSON [`Message`]; a
//! mount's /dev/fuse descriptor rides along with [`Message::Hold`] and with each mount the
//! keeper hands back ([`KeeperLink::take`]) as SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tessera_fusefs::Inheritance;

/// Set (to the keeper's pid) for a daemon a keeper started.
pub const VAR: &str = "TESSERA_KEEPER";

/// What a daemon serves at a mount point, as its keeper holds it for the next daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMount {
    pub container: String,
    pub mountpoint: PathBuf,
    pub share_memory: bool,
    pub write_through: bool,
    pub inheritance: Inheritance,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Daemon → keeper, with the mount's descriptor: hold it (replacing what was held for
    /// the same mount point).
    Hold(HeldMount),
    /// Daemon → keeper: what the next daemon needs changed (a hand-over's open handles).
    Update(HeldMount),
    /// Daemon → keeper: the mount is gone; close its descriptor.
    Release(PathBuf),
    /// Daemon → keeper: send every held mount.
    Take,
    /// Keeper → daemon, with its descriptor: one held mount.
    Held(HeldMount),
    /// Keeper → daemon: that was all.
    End,
}

/// The biggest packet: a mount record with a few thousand open handles.
const MAX_PACKET: usize = 4 << 20;

pub(crate) fn send(socket: impl AsFd, message: &Message, fd: Option<&OwnedFd>) -> Result<()> {
    let bytes = serde_json::to_vec(message)?;
    let fds: Vec<_> = fd.iter().map(|fd| fd.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .context("writing to the keeper's socket")?;
    Ok(())
}

/// The next packet and the descriptor it carried; `None` when the other side is gone.
pub(crate) fn receive(socket: impl AsFd) -> Result<Option<(Message, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .context("reading the keeper's socket")?;
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for received in fds {
                fd.get_or_insert(received);
            }
        }
    }
    if got.bytes == 0 {
        return Ok(None);
    }
    let message = serde_json::from_slice(&buf[..got.bytes]).context("a keeper message")?;
    Ok(Some((message, fd)))
}

/// A daemon's end of the socket to its keeper.
pub struct KeeperLink {
    socket: OwnedFd,
}

impl KeeperLink {
    /// The link to the keeper that started this daemon (it says so in [`VAR`]), connected to
    /// the keeper's socket at `path`.
    pub fn from_env(path: &std::path::Path) -> Result<Option<KeeperLink>> {
        if std::env::var_os(VAR).is_none() {
            return Ok(None);
        }
        let socket = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        let address = rustix::net::SocketAddrUnix::new(path)?;
        rustix::net::connect(&socket, &address)
            .with_context(|| format!("connecting to the keeper at {}", path.display()))?;
        Ok(Some(KeeperLink { socket }))
    }

    /// Every mount the keeper holds, with its descriptor.
    pub fn take(&self) -> Result<Vec<(HeldMount, OwnedFd)>> {
        send(&self.socket, &Message::Take, None)?;
        let mut held = Vec::new();
        loop {
            match receive(&self.socket)? {
                Some((Message::Held(mount), Some(fd))) => held.push((mount, fd)),
                Some((Message::End, _)) => return Ok(held),
                Some((other, _)) => bail!("unexpected keeper message {other:?}"),
                None => bail!("the keeper went away"),
            }
        }
    }

    /// Has the keeper hold `device`, the descriptor of `mount`.
    pub fn hold(&self, mount: &HeldMount, device: &OwnedFd) -> Result<()> {
        send(&self.socket, &Message::Hold(mount.clone()), Some(device))
    }

    pub fn update(&self, mount: &HeldMount) -> Result<()> {
        send(&self.socket, &Message::Update(mount.clone()), None)
    }

    pub fn release(&self, mountpoint: &std::path::Path) -> Result<()> {
        send(
            &self.socket,
            &Message::Release(mountpoint.to_path_buf()),
            None,
        )
    }
}
