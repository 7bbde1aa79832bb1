//! systemd's notify protocol (sd_notify) without libsystemd: one datagram per message to
//! the socket named in $NOTIFY_SOCKET. Outside systemd (no such variable) every call is a
//! no-op, so the same binary runs by hand, in the demo and in tests.
//!
//! The watchdog settings are read by the `sd-notify` crate (`watchdog_enabled`, systemd's
//! `sd_watchdog_enabled`). The datagrams are not sent with its `notify`, which
//! - ends every message with a newline: READY=1 goes out as "READY=1\n" (systemd takes
//!   both, but the bytes on the socket would change, and the station tests compare them);
//! - connects to $NOTIFY_SOCKET as a path, so a socket in the abstract namespace ("@name",
//!   which sd_notify(3) accepts) is not reached;
//! - reads the environment and opens a socket for every message, and has no way to name
//!   the socket other than the environment (the tests here name it directly).
//!
//! so [`Notifier`] keeps its own socket, opened once.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    pub fn from_env() -> Self {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) => name.to_str().map_or(Notifier { socket: None }, Notifier::for_socket),
            None => Notifier { socket: None },
        }
    }

    /// A notifier for the socket `name`: a path, or "@name" in the abstract namespace.
    /// Inactive when the name is not a socket address or no socket can be made.
    pub fn for_socket(name: &str) -> Self {
        let socket = socket_addr(name).and_then(|addr| Some((UnixDatagram::unbound().ok()?, addr)));
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
/// recommends. None when the watchdog is off: no or a zero $WATCHDOG_USEC, or a
/// $WATCHDOG_PID that is not ours.
pub fn watchdog_interval() -> Option<Duration> {
    // A WATCHDOG_PID that is not a number is not ours (libsystemd's sd_watchdog_enabled
    // fails on it); the crate would take it as absent and enable the watchdog.
    if std::env::var("WATCHDOG_PID").is_ok_and(|pid| pid.parse::<u32>().is_err()) {
        return None;
    }
    let usec = sd_notify::watchdog_enabled()?.as_micros() as u64;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn socket_addr(name: &str) -> Option<SocketAddr> {
    // A leading '@' names a socket in the abstract namespace.
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name).ok()
    } else {
        SocketAddr::from_pathname(name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The environment is the process's: the tests that set it take turns.
    static ENV: Mutex<()> = Mutex::new(());

    /// Runs `f` with the watchdog variables set as given (None: unset), then unsets them.
    fn with_watchdog_env<T>(usec: Option<&str>, pid: Option<&str>, f: impl FnOnce() -> T) -> T {
        let _turn = ENV.lock().unwrap_or_else(|p| p.into_inner());
        for (key, value) in [("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)] {
            match value {
                Some(v) => std::env::set_var(key, v),
                None => std::env::remove_var(key),
            }
        }
        let out = f();
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        out
    }

    fn received(server: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_the_named_socket_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::for_socket(path.to_str().unwrap());
        assert!(notifier.active());
        notifier.send("READY=1");
        notifier.send("STATUS=parts 3, pass 2");
        // No trailing newline: one message, exactly as given.
        assert_eq!(received(&server), "READY=1");
        assert_eq!(received(&server), "STATUS=parts 3, pass 2");
    }

    #[test]
    fn an_abstract_socket_is_reached() {
        let name = format!("cdo-inspect-notify-test-{}", std::process::id());
        let addr = {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&name).unwrap()
        };
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::for_socket(&format!("@{name}")).send("WATCHDOG=1");
        assert_eq!(received(&server), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let notifier = Notifier { socket: None };
        assert!(!notifier.active());
        notifier.send("READY=1");
        // A socket that is gone: the failure is logged, not raised.
        let dir = tempfile::tempdir().unwrap();
        let gone = Notifier::for_socket(dir.path().join("absent.sock").to_str().unwrap());
        assert!(gone.active());
        gone.send("WATCHDOG=1");
    }

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout_when_it_is_ours() {
        let ours = std::process::id().to_string();
        let half = Some(Duration::from_millis(200));
        assert_eq!(with_watchdog_env(Some("400000"), None, watchdog_interval), half);
        assert_eq!(with_watchdog_env(Some("400000"), Some(&ours), watchdog_interval), half);
        // Odd microseconds round down, as before.
        assert_eq!(
            with_watchdog_env(Some("400001"), None, watchdog_interval),
            Some(Duration::from_micros(200_000))
        );
    }

    #[test]
    fn the_watchdog_is_off_unless_set_nonzero_and_ours() {
        let other = (std::process::id() + 1).to_string();
        assert_eq!(with_watchdog_env(None, None, watchdog_interval), None);
        assert_eq!(with_watchdog_env(Some("0"), None, watchdog_interval), None);
        assert_eq!(with_watchdog_env(Some("soon"), None, watchdog_interval), None);
        assert_eq!(with_watchdog_env(Some("400000"), Some(&other), watchdog_interval), None);
        assert_eq!(with_watchdog_env(Some("400000"), Some("me"), watchdog_interval), None);
    }
}
