//! How the station is seen from outside: `[web]` (the operator view and `/metrics`) and
//! `[mqtt]` (records and state to the plant's broker). Each is off unless its table is in
//! the file, and each refuses the settings that would open the station carelessly: a web
//! server reachable from the network without a token for its one write, an MQTT password
//! in a file anybody on the machine can read.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::config::reader::{Reader, Section, COUNT, SECONDS};
use crate::config::schema::*;

pub(super) const WEB_KEYS: &[&str] = &["listen", "reset_token", "recent_parts", "trend_parts"];
pub(super) const MQTT_KEYS: &[&str] = &[
    "host",
    "port",
    "client_id",
    "topic_prefix",
    "qos",
    "username",
    "password",
    "password_file",
    "ca_file",
    "client_cert",
    "client_key",
    "buffer_parts",
    "keep_alive_s",
];

/// The web view's default address: this machine only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// A token shorter than this is guessable over a plant network.
const MIN_TOKEN_CHARS: usize = 16;

impl Reader<'_> {
    pub(in crate::config) fn web(&mut self, root: &Section) -> Option<WebConfig> {
        let s = self.section(root, "web", WEB_KEYS);
        s.table?;
        let listen = match self.string(&s, "listen", "an address and port (\"127.0.0.1:8080\")") {
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(&s, "listen", format!("expected an IP address and port such as \"127.0.0.1:8080\" or \"0.0.0.0:8080\", got \"{text}\""));
                    None
                }
            },
            None => None,
        };
        let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default address parses"));
        let reset_token = self.string(&s, "reset_token", "a string");
        if let Some(t) = &reset_token {
            if t.chars().count() < MIN_TOKEN_CHARS || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.err(&s, "reset_token", format!("must be at least {MIN_TOKEN_CHARS} characters without spaces (e.g. the output of `openssl rand -hex 16`)"));
            }
        }
        if !listen.ip().is_loopback() && reset_token.is_none() {
            self.err(
                &s,
                "listen",
                format!("{listen} is reachable from other machines: set reset_token (the page's one write, resetting the counters, needs it) or listen on 127.0.0.1"),
            );
        }
        Some(WebConfig {
            listen,
            reset_token,
            // Each kept part holds its frame: 1000 frames of 640x480 are about 1 GB.
            recent_parts: self.int(&s, "recent_parts", COUNT, 1, 1000).unwrap_or(50) as usize,
            trend_parts: self.int(&s, "trend_parts", COUNT, 10, 10_000).unwrap_or(300) as usize,
        })
    }

    pub(in crate::config) fn mqtt(&mut self, root: &Section, station: &str) -> Option<MqttConfig> {
        let s = self.section(root, "mqtt", MQTT_KEYS);
        s.table?;
        let host = self.string(&s, "host", "a host name or address");
        match &host {
            None if !s.has("host") => self.err(&s, "host", "required: the broker's host name or address".into()),
            Some(h) if h.trim().is_empty() || h.chars().any(char::is_whitespace) => {
                self.err(&s, "host", "must be a host name or address without spaces".into())
            }
            _ => {}
        }
        let ca_file = self.path(&s, "ca_file");
        let default_port = if ca_file.is_some() { 8883 } else { 1883 };
        let port = self.int(&s, "port", COUNT, 1, 65_535).unwrap_or(default_port) as u16;
        let name: String = station
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
            .collect();
        let client_id = self.string(&s, "client_id", "a string").unwrap_or_else(|| format!("cdo-inspect-{name}"));
        if client_id.is_empty() || client_id.chars().count() > 128 || client_id.chars().any(char::is_control) {
            self.err(&s, "client_id", "must be 1 to 128 characters, none of them control characters".into());
        }
        let topic_prefix =
            self.string(&s, "topic_prefix", "a topic (\"plant/line1/station\")").unwrap_or_else(|| format!("cdo-inspect/{name}"));
        if topic_prefix.is_empty()
            || topic_prefix.starts_with('/')
            || topic_prefix.ends_with('/')
            || topic_prefix.contains(['+', '#', '\0'])
        {
            self.err(&s, "topic_prefix", format!("must be a topic without wildcards (+, #) or a leading or trailing /, got \"{topic_prefix}\""));
        }
        let qos = self.int(&s, "qos", COUNT, 0, 2).unwrap_or(1) as u8;
        let username = self.string(&s, "username", "a string");
        let inline = self.string(&s, "password", "a string");
        let password_file = self.path(&s, "password_file");
        if let Some(p) = &password_file {
            self.check_file(&s, "password_file", p);
        }
        if inline.is_some() {
            if password_file.is_some() {
                self.err(&s, "password", "give password or password_file, not both".into());
            } else if let Some(mode) = world_readable(self.file()) {
                self.err(
                    &s,
                    "password",
                    format!("given inline in a file everybody on this machine can read (mode {mode:o}): put it in a file only the daemon can read and name it in password_file, or `chmod o-r` this file"),
                );
            }
        }
        let password = match (inline, password_file) {
            (Some(p), None) => Some(MqttPassword::Inline(p)),
            (_, Some(f)) => Some(MqttPassword::File(f)),
            (None, None) => None,
        };
        if password.is_some() && username.is_none() {
            self.err(&s, if s.has("password") { "password" } else { "password_file" }, "needs username".into());
        }
        if let Some(p) = &ca_file {
            self.check_file(&s, "ca_file", p);
        }
        let client_cert = self.path(&s, "client_cert");
        let client_key = self.path(&s, "client_key");
        for (key, p) in [("client_cert", &client_cert), ("client_key", &client_key)] {
            if let Some(p) = p {
                self.check_file(&s, key, p);
                if ca_file.is_none() {
                    self.err(&s, key, "needs ca_file (TLS)".into());
                }
            }
        }
        if client_cert.is_some() != client_key.is_some() {
            let missing = if client_cert.is_some() { "client_key" } else { "client_cert" };
            let given = if client_cert.is_some() { "client_cert" } else { "client_key" };
            self.err(&s, given, format!("needs {missing} too"));
        }
        Some(MqttConfig {
            host: host.unwrap_or_default(),
            port,
            client_id,
            topic_prefix,
            qos,
            username,
            password,
            ca_file,
            client_cert,
            client_key,
            // A record is about 1 KB: the default holds a shift of a fast line in 10 MB.
            buffer_parts: self.int(&s, "buffer_parts", COUNT, 1, 1_000_000).unwrap_or(10_000) as usize,
            keep_alive: Duration::from_secs(self.u64(&s, "keep_alive_s", SECONDS, 5, 3600).unwrap_or(30)),
        })
    }
}

/// The file's permission bits when others may read it; None when they may not (or the
/// file cannot be looked at: text parsed from memory in the tests).
fn world_readable(file: &std::path::Path) -> Option<u32> {
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::testing::{assert_cases, Expected, BASE, NO_FILES};
    use crate::config::{parse_with, MqttPassword};

    #[test]
    fn bad_web_and_mqtt_tables_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "a web server for the network without a token",
                format!("{BASE}[web]\nlisten = \"0.0.0.0:8080\"\n"),
                &[(Some(6), "web.listen", "reachable from other machines: set reset_token")],
            ),
            (
                "a short token and a listen address that is not one",
                format!("{BASE}[web]\nlisten = \"localhost\"\nreset_token = \"abc\"\n"),
                &[
                    (Some(6), "web.listen", "expected an IP address and port"),
                    (Some(7), "web.reset_token", "at least 16 characters"),
                ],
            ),
            (
                "no broker, a wildcard prefix, a password without user, half a client key pair",
                format!("{BASE}[mqtt]\ntopic_prefix = \"plant/#\"\npassword_file = \"pw\"\nclient_cert = \"c.pem\"\n"),
                &[
                    (Some(5), "mqtt.host", "required"),
                    (Some(6), "mqtt.topic_prefix", "without wildcards"),
                    (Some(7), "mqtt.password_file", "needs username"),
                    (Some(8), "mqtt.client_cert", "needs ca_file"),
                    (Some(8), "mqtt.client_cert", "needs client_key too"),
                ],
            ),
        ];
        assert_cases(cases);
    }

    #[test]
    fn the_tables_turn_their_interface_on_with_safe_defaults() {
        let path = std::path::Path::new("/nonexistent/station.toml");
        let c = parse_with(&format!("{BASE}[web]\n[mqtt]\nhost = \"broker\"\n"), path, NO_FILES).unwrap();
        let web = c.web.unwrap();
        assert_eq!((web.listen.to_string(), web.reset_token), ("127.0.0.1:8080".to_string(), None));
        let mqtt = c.mqtt.unwrap();
        assert_eq!((mqtt.port, mqtt.qos, mqtt.topic_prefix.as_str()), (1883, 1, "cdo-inspect/station"));
        assert!(parse_with(BASE, path, NO_FILES).unwrap().web.is_none());
    }

    /// The same inline password is refused in a world-readable file and accepted in one
    /// only its owner can read.
    #[test]
    fn an_inline_password_needs_a_file_others_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.toml");
        let text = format!("{BASE}[mqtt]\nhost = \"broker\"\nusername = \"station1\"\npassword = \"s3cret\"\n");
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = crate::config::load_with(&path, NO_FILES).unwrap_err().errors;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].line, e[0].key.as_str()), (Some(8), "mqtt.password"));
        assert!(e[0].message.contains("mode 644"), "{}", e[0]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let c = crate::config::load_with(&path, NO_FILES).unwrap();
        assert_eq!(c.mqtt.unwrap().password, Some(MqttPassword::Inline("s3cret".into())));
    }
}
