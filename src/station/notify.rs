//! systemd's notify protocol (sd_notify) without libsystemd: one datagram per message to
//! the socket named in $NOTIFY_SOCKET. Outside systemd (no such variable) every call is a
//! no-op, so the same binary runs by hand, in the demo and in tests.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let addr = socket_addr(name.to_str()?)?;
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, addr))
        });
        Notifier { socket }
    }

    pub fn active(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` ("READY=1", "WATCHDOG=1", "STATUS=…", "STOPPING=1"). A failure is
    /// logged, never fatal: the service manager's watchdog will notice if it matters.
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.socket {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                log::warn!("systemd notify failed ({state}): {e}");
            }
        }
    }
}

/// The interval the watchdog expects pings at: half of $WATCHDOG_USEC, as systemd
/// recommends. None when the watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // WATCHDOG_PID, when set, must be ours.
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn socket_addr(name: &str) -> Option<std::os::unix::net::SocketAddr> {
    // A leading '@' names a socket in the abstract namespace.
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).ok()
    } else {
        std::os::unix::net::SocketAddr::from_pathname(name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket_named_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let addr = socket_addr(path.to_str().unwrap()).unwrap();
        let notifier = Notifier { socket: Some((UnixDatagram::unbound().unwrap(), addr)) };
        notifier.send("READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
