//! The station seen from outside, tested with the real things: the daemon (real binary,
//! trained model, replay camera, simulated GPIO) with its web view loaded in headless
//! Chromium, its /metrics checked by promtool, its records received from Debian's
//! mosquitto broker by an MQTT client; the broker stopped and started mid-run.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::outside::{chromium, free_port, get, http, output_within, program, test_certificates, web_address, Broker};
use common::{records, signal, station_log, wait_exit, wait_for};
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789";
/// A pulse must start within this of its due time (as tests/station.rs).
const TOLERANCE_US: f64 = 30_000.0;
/// Chromium loads and dumps or screenshots a page in seconds; a hang fails the test.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// `n` parts, good and defective in turn, one corrupt frame third: `line/NNNN_<kind>.png`.
fn line(root: &Path, n: usize) {
    let f = common::line_model();
    let dir = root.join("line");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        let name = dir.join(format!("{:04}_{}.png", i + 1, if i == 2 { "corrupt" } else if i % 3 == 1 { "defect" } else { "good" }));
        match i {
            2 => {
                let bytes = std::fs::read(&f.good[0]).unwrap();
                std::fs::write(&name, &bytes[..bytes.len() / 3]).unwrap();
            }
            _ if i % 3 == 1 => drop(std::fs::copy(&f.defects[i % f.defects.len()], &name).unwrap()),
            _ => drop(std::fs::copy(&f.good[i % f.good.len()], &name).unwrap()),
        }
    }
}

/// A station that triggers `n` parts from the simulated sensor, `every_ms` apart, and
/// keeps running until stopped; `extra` adds tables.
fn station(root: &Path, n: usize, every_ms: usize, extra: &str) -> PathBuf {
    line(root, n);
    let inject: Vec<String> = (0..n).map(|i| (600 + i * every_ms).to_string()).collect();
    let text = format!(
        r#"[station]
name = "outside-test"
[model]
bundle = "{bundle}"
models_dir = "{models}"
[camera]
source = "replay"
[camera.replay]
folder = "line"
[trigger]
mode = "gpio"
line = "sensor"
[gpio]
backend = "simulated"
edge_log = "edges.jsonl"
inject_ms = [{inject}]
[reject]
line = "gpiochip0:22"
delay_ms = 1500
pulse_ms = 50
[outputs.ready]
line = "gpiochip0:23"
{extra}
"#,
        bundle = common::line_model().bundle.display(),
        models = common::models_dir().display(),
        inject = inject.join(", "),
    );
    let path = root.join("station.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path) -> Child {
    let dir = config.parent().unwrap();
    common::cdo_verb("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap()
}

fn wait_web(dir: &Path) -> SocketAddr {
    let mut addr = None;
    wait_for("the web view's address", dir, Duration::from_secs(120), || {
        addr = web_address(&station_log(dir));
        addr.is_some()
    });
    addr.unwrap()
}

/// A sample of the exposition: the value of the line that starts with `series `.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} not in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// The text of the element with `id` in a DOM dump.
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    &rest[start..start + end]
}

/// A client that asks for the event stream with a tiny receive buffer and never reads.
fn stuck_client(addr: SocketAddr) -> TcpStream {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let s = TcpStream::connect(addr).unwrap();
    let size: libc::c_int = 1024;
    // SAFETY: setsockopt on our own socket with a c_int option.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    (&s).write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    s
}

#[test]
fn the_web_view_shows_the_records_in_chromium_and_metrics_pass_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let n = 8;
    let config = station(dir, n, 400, &format!("[web]\nlisten = \"127.0.0.1:0\"\nreset_token = \"{TOKEN}\"\nrecent_parts = 4\n"));
    let mut child = start(&config);
    let addr = wait_web(dir);
    // Clients that never read (the event stream, and a request never finished): the
    // inspection must not notice them.
    let stuck: Vec<TcpStream> = (0..4).map(|_| stuck_client(addr)).collect();
    let half = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut &half, b"GET /api/sta").unwrap();
    wait_for("every record", dir, Duration::from_secs(120), || records(dir).len() >= n);
    let recs = records(dir);
    let ids: Vec<u64> = recs.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=n as u64).collect::<Vec<_>>());
    for r in &recs {
        let corrupt = r["origin"].as_str().unwrap().contains("corrupt");
        assert_eq!(r["fail_safe"], corrupt, "only the corrupt frame is fail-safe (no part late): {r}");
        if let Some(late) = r["pulse"]["late_us"].as_f64() {
            assert!(late < TOLERANCE_US, "pulse {late} µs late with stuck clients: {r}");
        }
    }
    let count = |v: &str| recs.iter().filter(|r| r["verdict"] == v).count();
    let (pass, reject) = (count("pass"), count("reject"));
    assert!(pass > 0 && reject > 1, "{recs:?}");

    // /metrics: valid for promtool, and its counters are the records'.
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let mut promtool = std::process::Command::new(program("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        common::stdout(&checked),
        common::stderr(&checked)
    );
    assert_eq!(sample(&metrics, "cdo_inspect_parts_total{verdict=\"pass\",reason=\"none\"}"), pass as f64);
    assert_eq!(
        sample(&metrics, "cdo_inspect_parts_total{verdict=\"reject\",reason=\"none\"}"),
        (reject - 1) as f64,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "cdo_inspect_parts_total{verdict=\"reject\",reason=\"corrupt_frame\"}"), 1.0);
    assert_eq!(sample(&metrics, "cdo_inspect_verdict_latency_seconds_count"), (n - 1) as f64);
    assert_eq!(sample(&metrics, "cdo_inspect_late_rejects_total"), 0.0);
    assert_eq!(sample(&metrics, "cdo_inspect_ready"), 1.0);
    assert_eq!(sample(&metrics, "cdo_inspect_outside_dropped_total"), 0.0);
    // The clients that never read are still connected, their streams open.
    assert_eq!(sample(&metrics, "cdo_inspect_web_event_streams"), 4.0);

    // The page in Chromium: the last part, the counters, the overlay loaded.
    let shots = common::root().join("target/test-screens");
    std::fs::create_dir_all(&shots).unwrap();
    let url = format!("http://{addr}/");
    // Dumped at the page's load event: rendered from the state it was served with, its
    // image loaded.
    let dom = output_within(chromium(&dir.join("chromium")).args(["--window-size=1280,800", "--dump-dom", &url]), BROWSER_LIMIT);
    let dom = common::stdout(&dom);
    assert_eq!(element_text(&dom, "part-id"), n.to_string(), "{dom}");
    let last = &recs[n - 1];
    let shown = if last["verdict"] == "pass" { "OK" } else { "NG" };
    assert_eq!(element_text(&dom, "verdict"), shown);
    assert_eq!(element_text(&dom, "score"), format!("{:.4}", last["score"].as_f64().unwrap()));
    assert_eq!(element_text(&dom, "count-parts"), n.to_string());
    assert_eq!(element_text(&dom, "count-pass"), pass.to_string());
    assert_eq!(element_text(&dom, "count-reject"), reject.to_string());
    assert_eq!(element_text(&dom, "count-fail-safe"), "1");
    assert_eq!(element_text(&dom, "state"), "ready");
    let img = &dom[dom.find("<img id=\"overlay\"").unwrap()..];
    let img = &img[..img.find('>').unwrap()];
    assert!(img.contains("data-loaded=\"1\"") && img.contains(&format!("data-part=\"{n}\"")), "the overlay did not load: {img}");
    for (w, h, name) in [(1280, 800, "operator-view-1280x800.png"), (412, 915, "operator-view-phone.png")] {
        let path = shots.join(name);
        let _ = std::fs::remove_file(&path);
        let out = output_within(
            chromium(&dir.join("chromium")).args([&format!("--window-size={w},{h}"), &format!("--screenshot={}", path.display()), &url]),
            BROWSER_LIMIT,
        );
        assert!(path.is_file(), "no screenshot: {}", common::output_text(&out));
        image::open(&path).expect("the screenshot is an image");
    }

    // The one write needs the token; refusals are logged and counted.
    assert_eq!(http(addr, "POST", "/api/reset", &[]).0, 401);
    assert_eq!(http(addr, "POST", "/api/reset", &[("Authorization", "Bearer wrong-token-0123456789")]).0, 401);
    assert_eq!(http(addr, "GET", "/api/reset", &[]).0, 405);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(http(addr, "POST", "/api/reset", &[("Authorization", &bearer)]).0, 200);
    let state: Value = serde_json::from_str(&get(addr, "/api/state").1).unwrap();
    assert_eq!((state["counts"]["parts"].as_u64(), state["since_reset"]["parts"].as_u64()), (Some(n as u64), Some(0)));
    // Images: from memory, and the archive by file name only.
    let (status, png) = get(addr, &format!("/api/parts/{n}/overlay.png"));
    assert_eq!((status, png.starts_with("\u{fffd}PNG")), (200, true));
    let archived = std::fs::read_dir(dir.join("archive")).unwrap().next().unwrap().unwrap().file_name();
    assert_eq!(get(addr, &format!("/archive/{}", archived.to_string_lossy())).0, 200);
    std::os::unix::fs::symlink(dir.join("station.toml"), dir.join("archive/link.png")).unwrap();
    for path in ["/archive/../station.toml", "/archive/%2e%2e%2fstation.toml", "/archive/..%2F..%2Fetc%2Fpasswd", "/archive/link.png"] {
        assert_eq!(get(addr, path).0, 403, "{path}");
    }
    let log = station_log(dir);
    assert_eq!(log.matches("web: refused").count(), 7, "{log}");
    let (_, metrics) = get(addr, "/metrics");
    assert_eq!(sample(&metrics, "cdo_inspect_web_refused_requests_total"), 7.0);

    drop(stuck);
    drop(half);
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(30)), 0, "{}", station_log(dir));
}

/// Messages received by an MQTT client: (topic, payload, retained).
type Inbox = Arc<Mutex<Vec<(String, Value, bool)>>>;

/// An MQTT client of the plant, subscribed to `filter` at QoS 1, that keeps receiving
/// across broker restarts (`persistent`: the broker keeps its subscription meanwhile).
fn subscriber(port: u16, id: &str, filter: &str, persistent: bool) -> Inbox {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_clean_session(!persistent).set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, 100);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let inbox: Inbox = Default::default();
    let (got, subscribed) = (inbox.clone(), Arc::new(std::sync::Barrier::new(2)));
    let ready = subscribed.clone();
    std::thread::spawn(move || {
        let _client = client;
        let mut once = Some(ready);
        loop {
            match connection.recv() {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    if let Some(b) = once.take() {
                        b.wait();
                    }
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    got.lock().unwrap().push((p.topic.clone(), v, p.retain));
                }
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
    });
    subscribed.wait();
    inbox
}

fn part_ids(inbox: &Inbox) -> Vec<u64> {
    inbox.lock().unwrap().iter().filter(|(t, ..)| t.ends_with("/parts")).map(|(_, v, _)| v["id"].as_u64().unwrap()).collect()
}

fn states(inbox: &Inbox) -> Vec<(String, bool)> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, ..)| t.ends_with("/state"))
        .map(|(_, v, retained)| (v["state"].as_str().unwrap_or("?").to_string(), *retained))
        .collect()
}

fn wait_until(what: &str, dir: &Path, timeout_s: u64, done: impl FnMut() -> bool) {
    wait_for(what, dir, Duration::from_secs(timeout_s), done);
}

#[test]
fn every_part_reaches_the_broker_once_with_the_state_retained_and_the_last_will_on_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broker = Broker::start(&dir.join("broker"), free_port());
    let plant = subscriber(broker.port, "plant", "cdo/test/#", false);
    let n = 6;
    let config = station(dir, n, 300, &format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntopic_prefix = \"cdo/test\"\nqos = 1\n", broker.port));
    let mut child = start(&config);
    wait_until("every record", dir, 120, || records(dir).len() >= n);
    wait_until("every part at the plant", dir, 30, || part_ids(&plant).len() >= n);
    std::thread::sleep(Duration::from_millis(500));
    // Exactly once each, in order, with the record's fields.
    assert_eq!(part_ids(&plant), (1..=n as u64).collect::<Vec<_>>());
    let recs = records(dir);
    for ((_, got, _), r) in plant.lock().unwrap().iter().filter(|(t, ..)| t.ends_with("/parts")).zip(&recs) {
        assert_eq!(got, r, "the message is the record");
    }
    assert!(states(&plant).iter().any(|(s, _)| s == "ready"), "{:?}", states(&plant));
    // A client that subscribes later gets the state, retained.
    let late = subscriber(broker.port, "late", "cdo/test/state", false);
    wait_until("the retained state", dir, 10, || !states(&late).is_empty());
    assert_eq!(states(&late)[0], ("ready".to_string(), true));
    // Killed without a goodbye: the broker publishes the last will, retained.
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the last will", dir, 30, || states(&plant).last().is_some_and(|(s, _)| s == "offline"));
    let after = subscriber(broker.port, "after", "cdo/test/state", false);
    wait_until("the retained last will", dir, 10, || !states(&after).is_empty());
    assert_eq!(states(&after)[0], ("offline".to_string(), true));
}

#[test]
fn a_broker_away_loses_nothing_that_fits_the_buffer_and_counts_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut broker = Broker::start(&dir.join("broker"), free_port());
    let plant = subscriber(broker.port, "plant", "cdo/line/parts", true);
    let n = 14;
    let buffer = 4;
    let config = station(
        dir,
        n,
        300,
        &format!(
            "[web]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntopic_prefix = \"cdo/line\"\nbuffer_parts = {buffer}\n",
            broker.port
        ),
    );
    let mut child = start(&config);
    let addr = wait_web(dir);
    wait_until("two parts at the plant", dir, 120, || part_ids(&plant).len() >= 2);
    broker.stop();
    let before = records(dir).len();
    // Away for long enough that more parts come than the buffer holds.
    wait_until("parts while the broker is away", dir, 60, || records(dir).len() >= before + buffer + 3);
    let (_, metrics) = get(addr, "/metrics");
    assert_eq!(sample(&metrics, "cdo_inspect_mqtt_connected"), 0.0);
    broker.restart();
    wait_until("every record", dir, 60, || records(dir).len() >= n);
    let t0 = Instant::now();
    let dropped = loop {
        let (_, m) = get(addr, "/metrics");
        let dropped = sample(&m, "cdo_inspect_mqtt_dropped_total");
        let settled = sample(&m, "cdo_inspect_mqtt_queued") == 0.0 && sample(&m, "cdo_inspect_mqtt_connected") == 1.0;
        let mut got = part_ids(&plant);
        got.dedup();
        if settled && got.len() as f64 + dropped >= n as f64 {
            break dropped;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the buffer was not delivered: received {got:?}, dropped {dropped}\n{m}\n{}\nbroker:\n{}",
            station_log(dir),
            std::fs::read_to_string(dir.join("broker/mosquitto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("buffer delivered {:?} after the broker came back", t0.elapsed());
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(30)), 0, "{}", station_log(dir));
    // Every record reached the plant or was counted as dropped; some had to be (the
    // outage outlasted the buffer), and what arrived arrived in order.
    let got = part_ids(&plant);
    let mut unique = got.clone();
    unique.dedup();
    assert!(dropped >= 1.0, "the outage should have overflowed the buffer");
    assert_eq!(unique.len() as f64 + dropped, n as f64, "received {got:?}, dropped {dropped}");
    assert!(unique.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    eprintln!("received {} records ({} duplicates after the reconnect), dropped {dropped}", got.len(), got.len() - unique.len());
    let log = station_log(dir);
    assert!(log.contains("mqtt: broker 127.0.0.1"), "{log}");
    assert!(log.contains("dropping the next ones"), "{log}");
    assert!(log.contains("connected to 127.0.0.1") && log.contains("again after"), "{log}");
}

/// TLS with a client certificate: the broker's listener accepts only clients whose
/// certificate its CA signed, and the station's records arrive through it.
#[test]
fn records_reach_a_broker_over_tls_with_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let [ca, server, server_key, client, client_key] = test_certificates(&dir.join("certs"));
    let tls_port = free_port();
    let broker = Broker::start_with(
        &dir.join("broker"),
        free_port(),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            ca.display(),
            server.display(),
            server_key.display()
        ),
    );
    // The plant listens on the plain listener; the station talks TLS only.
    let plant = subscriber(broker.port, "plant", "cdo/tls/#", false);
    let n = 3;
    let config = station(
        dir,
        n,
        300,
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {tls_port}\ntopic_prefix = \"cdo/tls\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            ca.display(),
            client.display(),
            client_key.display()
        ),
    );
    let mut child = start(&config);
    wait_until("every record", dir, 120, || records(dir).len() >= n);
    wait_until("every part over TLS", dir, 30, || part_ids(&plant).len() >= n);
    assert_eq!(part_ids(&plant), (1..=n as u64).collect::<Vec<_>>());
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(30)), 0, "{}", station_log(dir));
    // A clean stop says so (retained), instead of the last will.
    wait_until("the state stopped", dir, 10, || states(&plant).last().is_some_and(|(s, _)| s == "stopped"));
    let log = std::fs::read_to_string(dir.join("broker/mosquitto.log")).unwrap();
    assert!(log.contains(&format!("on port {tls_port}")), "{log}");
}
