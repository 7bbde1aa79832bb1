//! Records and state to the plant over MQTT (`[mqtt]`): each part's record, the same
//! JSON as its line in `parts.jsonl`, to `<prefix>/parts`; the station's state, retained,
//! to `<prefix>/state`, with a last will that says "offline" when the daemon dies
//! without saying goodbye.
//!
//! The queue is ours, not the client library's: records wait in a bounded [`Queue`]
//! (`buffer_parts`) and leave it for the connection only while the broker is connected,
//! a few at a time; one the broker has not acknowledged when the connection drops goes
//! back to the front of the queue and is sent again after the reconnect (QoS 1: at
//! least once; the library's own session replay is not used, as a broker that lost the
//! session would drop what it held). A record that finds the queue full is dropped,
//! counted (`cdo_inspect_mqtt_dropped_total`, the page) and logged once per outage. The
//! inspection never waits on any of it: the `outside` thread only appends to the queue.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError, Transport};

use super::{lock, Identity};
use crate::config::{MqttConfig, MqttPassword};
use crate::station::records::{rfc3339, PartRecord};
use crate::text::for_log;

/// Records handed to the connection and not yet acknowledged, at most.
const WINDOW: usize = 32;
/// At stop: how long the last records and the state "stopped" may take to go out.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Between attempts to reach a broker that is away.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot start the connection thread: {0}")]
    Thread(std::io::Error),
}

/// The records waiting for the broker, and what became of them.
pub struct Queue {
    records: Mutex<VecDeque<Vec<u8>>>,
    cap: usize,
    connected: AtomicBool,
    dropped: AtomicU64,
    delivered: AtomicU64,
    /// Dropping was logged during this outage.
    drop_logged: AtomicBool,
    /// The latest state message, to send (retained) when it changes and at each connect.
    state: Mutex<Option<Vec<u8>>>,
    state_dirty: AtomicBool,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Queue {
            records: Mutex::new(VecDeque::new()),
            cap,
            connected: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            drop_logged: AtomicBool::new(false),
            state: Mutex::new(None),
            state_dirty: AtomicBool::new(false),
        }
    }

    /// Queues a record, or drops and counts it when the queue is full.
    pub fn push(&self, record: &PartRecord) {
        let Ok(payload) = serde_json::to_vec(record) else { return };
        let mut q = lock(&self.records);
        if q.len() >= self.cap {
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.drop_logged.swap(true, Ordering::Relaxed) {
                log::error!(
                    "mqtt: {} records wait for the broker, the buffer's limit (mqtt.buffer_parts): dropping the next ones (counted in cdo_inspect_mqtt_dropped_total; they are in parts.jsonl)",
                    self.cap
                );
            }
            return;
        }
        q.push_back(payload);
    }

    /// (connected, dropped, queued, delivered)
    pub fn stats(&self) -> (bool, u64, u64, u64) {
        (
            self.connected.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            lock(&self.records).len() as u64,
            self.delivered.load(Ordering::Relaxed),
        )
    }
}

/// Sets the state message.
pub struct StateSender {
    queue: Arc<Queue>,
    identity: Identity,
}

impl StateSender {
    pub fn send(&self, state: &str, fault: Option<&str>) {
        *lock(&self.queue.state) = Some(state_message(&self.identity, state, fault));
        self.queue.state_dirty.store(true, Ordering::Relaxed);
    }
}

fn state_message(id: &Identity, state: &str, fault: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "station": id.station,
        "state": state,
        "fault": fault,
        "version": id.version,
        "model_sha256": id.model_sha256,
        "time": rfc3339(std::time::SystemTime::now()),
    }))
    .unwrap_or_default()
}

/// The connection thread.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    queue: Arc<Queue>,
    identity: Identity,
}

struct Link {
    client: Client,
    parts: String,
    state: String,
    qos: QoS,
    broker: String,
}

impl Publisher {
    pub fn start(cfg: &MqttConfig, identity: &Identity, queue: Arc<Queue>) -> Result<Self, MqttError> {
        let qos = match cfg.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let state_topic = format!("{}/state", cfg.topic_prefix);
        let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        opts.set_keep_alive(cfg.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_last_will(LastWill::new(&state_topic, state_message(identity, "offline", None), qos, true));
        if let Some(user) = &cfg.username {
            let password = match &cfg.password {
                Some(MqttPassword::Inline(p)) => p.clone(),
                Some(MqttPassword::File(f)) => read(f)?.trim_end_matches(['\n', '\r']).to_string(),
                None => String::new(),
            };
            opts.set_credentials(user, password);
        }
        if let Some(ca) = &cfg.ca_file {
            // rustls with the ring provider (see Cargo.toml), installed once per process.
            // rustls marks it deprecated for its lack of post-quantum key exchange; a
            // plant broker's TLS 1.2/1.3 works with it.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client_auth = match (&cfg.client_cert, &cfg.client_key) {
                (Some(c), Some(k)) => Some((read(c)?.into_bytes(), read(k)?.into_bytes())),
                _ => None,
            };
            opts.set_transport(Transport::tls(read(ca)?.into_bytes(), client_auth, None));
        }
        let (client, connection) = Client::new(opts, 2 * WINDOW + 8);
        let link = Link {
            client,
            parts: format!("{}/parts", cfg.topic_prefix),
            state: state_topic,
            qos,
            broker: format!("{}:{}", cfg.host, cfg.port),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (queue.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                super::lower_priority();
                run(link, connection, &q, &s)
            })
            .map_err(MqttError::Thread)?;
        Ok(Publisher { stop, thread, queue, identity: identity.clone() })
    }

    pub fn state_sender(&self) -> StateSender {
        StateSender { queue: self.queue.clone(), identity: self.identity.clone() }
    }

    /// Sends what is queued and the last state (for [`STOP_GRACE`] at most), then
    /// disconnects cleanly (no last will).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn read(path: &Path) -> Result<String, MqttError> {
    std::fs::read_to_string(path).map_err(|source| MqttError::Read { path: path.to_path_buf(), source })
}

/// A message handed to the client: a record (its payload kept to send again) or the
/// state; its packet id once the client has sent it.
struct InFlight {
    pkid: Option<u16>,
    record: Option<Vec<u8>>,
}

fn run(link: Link, mut connection: rumqttc::Connection, queue: &Queue, stop: &AtomicBool) {
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut connected = false;
    let mut retry = RETRY_MIN;
    let mut away_since: Option<Instant> = Some(Instant::now());
    let mut away_logged = false;
    let mut stop_at: Option<Instant> = None;
    let mut disconnecting = false;
    loop {
        if stop.load(Ordering::Relaxed) && stop_at.is_none() {
            stop_at = Some(Instant::now() + STOP_GRACE);
        }
        if let Some(at) = stop_at {
            let idle = inflight.is_empty() && lock(&queue.records).is_empty() && !queue.state_dirty.load(Ordering::Relaxed);
            if connected && idle && !disconnecting {
                disconnecting = link.client.try_disconnect().is_ok();
            }
            if Instant::now() >= at || (!connected && idle) {
                let left = lock(&queue.records).len() + inflight.iter().filter(|m| m.record.is_some()).count();
                if left > 0 {
                    log::warn!("mqtt: stopped with {left} records not delivered to {} (they are in parts.jsonl)", for_log(&link.broker));
                }
                break;
            }
        }
        if connected && !disconnecting {
            feed(&link, queue, &mut inflight);
        }
        match connection.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(event)) => match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    connected = true;
                    retry = RETRY_MIN;
                    queue.connected.store(true, Ordering::Relaxed);
                    queue.drop_logged.store(false, Ordering::Relaxed);
                    queue.state_dirty.store(true, Ordering::Relaxed);
                    let waiting = lock(&queue.records).len();
                    match away_since.take() {
                        Some(t) if away_logged => log::info!(
                            "mqtt: connected to {} again after {} s; sending the {waiting} records that waited",
                            for_log(&link.broker),
                            t.elapsed().as_secs()
                        ),
                        _ => log::info!("mqtt: connected to {}", for_log(&link.broker)),
                    }
                    away_logged = false;
                }
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(m) = inflight.iter_mut().find(|m| m.pkid.is_none()) {
                        m.pkid = Some(pkid);
                    }
                    if link.qos == QoS::AtMostOnce {
                        // Nothing comes back for QoS 0: sent is all there is.
                        if let Some(i) = inflight.iter().position(|m| m.pkid == Some(pkid)) {
                            acknowledged(queue, &mut inflight, i);
                        }
                    }
                }
                Event::Incoming(Packet::PubAck(a)) => ack(queue, &mut inflight, a.pkid),
                Event::Incoming(Packet::PubComp(c)) => ack(queue, &mut inflight, c.pkid),
                Event::Outgoing(Outgoing::Disconnect) if disconnecting => {
                    connected = false;
                    queue.connected.store(false, Ordering::Relaxed);
                }
                _ => {}
            },
            Ok(Err(e)) => {
                if disconnecting {
                    break;
                }
                if connected || !away_logged {
                    log::warn!(
                        "mqtt: broker {} {}: {}; records wait in memory (up to {}) and go out when it is back",
                        for_log(&link.broker),
                        if connected { "lost" } else { "unreachable" },
                        for_log(&e.to_string()),
                        queue.cap
                    );
                    away_logged = true;
                }
                if connected {
                    away_since = Some(Instant::now());
                }
                connected = false;
                queue.connected.store(false, Ordering::Relaxed);
                // Unacknowledged records go back to the front, in order; the state is
                // sent again at the next connect.
                let mut q = lock(&queue.records);
                for m in inflight.drain(..).rev() {
                    if let Some(r) = m.record {
                        q.push_front(r);
                    }
                }
                drop(q);
                let until = Instant::now() + retry;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    queue.connected.store(false, Ordering::Relaxed);
}

/// Hands the state (when it changed) and queued records to the client, up to the window.
fn feed(link: &Link, queue: &Queue, inflight: &mut VecDeque<InFlight>) {
    if queue.state_dirty.load(Ordering::Relaxed) && inflight.len() < WINDOW {
        let state = lock(&queue.state).clone();
        if let Some(payload) = state {
            if link.client.try_publish(&link.state, link.qos, true, payload).is_ok() {
                queue.state_dirty.store(false, Ordering::Relaxed);
                inflight.push_back(InFlight { pkid: None, record: None });
            }
        } else {
            queue.state_dirty.store(false, Ordering::Relaxed);
        }
    }
    while inflight.len() < WINDOW {
        let Some(record) = lock(&queue.records).pop_front() else { break };
        match link.client.try_publish(&link.parts, link.qos, false, record.clone()) {
            Ok(()) => inflight.push_back(InFlight { pkid: None, record: Some(record) }),
            Err(_) => {
                lock(&queue.records).push_front(record);
                break;
            }
        }
    }
}

fn ack(queue: &Queue, inflight: &mut VecDeque<InFlight>, pkid: u16) {
    if let Some(i) = inflight.iter().position(|m| m.pkid == Some(pkid)) {
        acknowledged(queue, inflight, i);
    }
}

fn acknowledged(queue: &Queue, inflight: &mut VecDeque<InFlight>, i: usize) {
    if let Some(m) = inflight.remove(i) {
        if m.record.is_some() {
            queue.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
