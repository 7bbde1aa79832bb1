//! The operator view and `/metrics` (`[web]`): an HTTP server (axum) on a tokio runtime
//! of its own two threads (nice 10), with the page's files compiled into the binary.
//!
//! Read-only but for one write, resetting the page's counters, which needs the station
//! file's `reset_token` (as `Authorization: Bearer <token>`). Every refused request is
//! logged with the client's address and counted. Images come from memory (the last
//! `recent_parts` parts: the frame, and its overlay drawn on first request) or from the
//! archive folder, by file name only: a path that leaves the folder is refused.
//!
//! The page updates itself from server-sent events (`/events`): the station's whole
//! view as JSON at each change, at most five times a second. A browser that stops
//! reading only fills its own socket: each event is built from the view when its
//! stream is polled, and nothing upstream waits for it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::Stream;
use image::RgbImage;
use serde_json::json;

use super::{Seen, Shared};
use crate::config::WebConfig;
use crate::station::records::rfc3339;
use crate::text::for_log;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");
/// Server-sent events are coalesced over this long.
const EVENT_EVERY: Duration = Duration::from_millis(200);

type Shd = Arc<Shared>;

pub struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens at once (so a taken port is reported at start-up), then serves from the
    /// `web` threads.
    pub fn start(cfg: &WebConfig, shared: Shd) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind(cfg.listen)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .thread_name("web")
            .on_thread_start(super::lower_priority)
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared);
        let thread = std::thread::Builder::new().name("web".into()).spawn(move || {
            super::lower_priority();
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return log::error!("web: {e}"),
                };
                let service = app.into_make_service_with_connect_info::<SocketAddr>();
                tokio::select! {
                    r = axum::serve(listener, service) => if let Err(e) = r { log::error!("web: {e}") },
                    _ = stopped => {}
                }
            });
            // Open event streams and stuck clients are cut off, not waited for.
            runtime.shutdown_timeout(Duration::from_millis(500));
        })?;
        Ok(Server { address, stop: Some(stop), thread: Some(thread) })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(shared: Shd) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/style.css", get(|| async { page(STYLE, "text/css; charset=utf-8") }))
        .route("/api/state", get(state))
        .route("/events", get(events))
        .route("/api/parts/{id}", get(part_record))
        .route("/api/parts/{id}/overlay.png", get(overlay))
        .route("/api/parts/{id}/frame.png", get(frame))
        .route("/archive/{*name}", get(archived))
        .route("/api/reset", post(reset))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), refusals))
        .with_state(shared)
}

/// The page with the station's state in it, so that it shows the station at its first
/// paint (and a browser dumping or printing it at its load event sees it too); the
/// events keep it current from there.
async fn index(State(s): State<Shd>) -> Response {
    // No "</" inside the script element: the JSON's own slashes are escaped.
    let state = snapshot(&s).to_string().replace("</", "<\\/");
    let html = INDEX.replace(
        "<!--STATE-->",
        &format!("<script id=\"initial-state\" type=\"application/json\">{state}</script>"),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response()
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Logs and counts every refused request (a bad or missing token, a path outside the
/// archive, a wrong method), with who asked.
async fn refusals(State(s): State<Shd>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    let response = next.run(req).await;
    let status = response.status();
    if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED) {
        s.web_refused.fetch_add(1, Ordering::Relaxed);
        log::warn!("web: refused {} from {peer}: {status}", for_log(&what));
    }
    response
}

async fn metrics(State(s): State<Shd>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics_text()).into_response()
}

async fn state(State(s): State<Shd>) -> Response {
    json_response(snapshot(&s))
}

fn json_response(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], v.to_string()).into_response()
}

async fn events(State(s): State<Shd>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = s.changes.subscribe();
    let watching = Watching::new(s);
    let stream = futures_util::stream::unfold((changes, watching, true), |(mut changes, w, first)| async move {
        if !first {
            changes.changed().await.ok()?;
            tokio::time::sleep(EVENT_EVERY).await;
        }
        changes.borrow_and_update();
        let event = Event::default().event("state").data(snapshot(&w.0).to_string());
        Some((Ok(event), (changes, w, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An open event stream, counted while it lives (`cdo_inspect_web_event_streams`).
struct Watching(Shd);

impl Watching {
    fn new(s: Shd) -> Self {
        s.event_streams.fetch_add(1, Ordering::Relaxed);
        Watching(s)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.event_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything the page shows, as JSON.
pub fn snapshot(s: &Shared) -> serde_json::Value {
    let id = &s.identity;
    let counts = s.metrics.counts();
    let v = s.view();
    let last = v.recent.back().map(|seen| {
        json!({
            "record": seen.record,
            "image": seen.image.is_some().then(|| format!("/api/parts/{}/overlay.png", seen.record.id)),
        })
    });
    let trend: Vec<_> = v.trend.iter().map(|p| json!([p.id, p.score, p.reject])).collect();
    let rejects: Vec<_> = v
        .rejects
        .iter()
        .rev()
        .map(|r| {
            json!({
                "id": r.id,
                "score": r.score,
                "reason": r.reason,
                "triggered": r.triggered,
                "image": image_url(&v.recent, r.id, &r.archived),
            })
        })
        .collect();
    let mut totals: Vec<f64> = v.trend.iter().filter_map(|p| p.total_ms).collect();
    let stages = stage_medians(v.recent.iter().map(|seen| &seen.record.latency_ms));
    let cycle_ms = cycle_ms(v.recent.iter().map(|seen| seen.record.triggered.as_str()));
    let (baseline, reset_at) = (v.baseline, v.reset_at);
    drop(v);
    totals.sort_by(f64::total_cmp);
    let mqtt = s.mqtt.as_ref().map(|q| {
        let (connected, dropped, queued, delivered) = q.stats();
        json!({"connected": connected, "dropped": dropped, "queued": queued, "delivered": delivered})
    });
    json!({
        "station": id.station,
        "version": id.version,
        "model": {"path": id.model, "backbone": id.backbone, "sha256": id.model_sha256},
        "threshold": id.threshold,
        "reject_delay_ms": id.reject_delay.as_millis() as u64,
        "started": rfc3339(id.started_wall),
        "uptime_s": id.started.elapsed().as_secs(),
        "state": s.status.word(),
        "ready": s.status.ready(),
        "fault": s.status.fault(),
        "camera_up": s.status.camera_up(),
        "counts": counts,
        "since_reset": counts.since(&baseline),
        "reset_at": reset_at.map(rfc3339),
        "reset_allowed": s.web.as_ref().is_some_and(|w| w.reset_token.is_some()),
        "last": last,
        "trend": trend,
        "rejects": rejects,
        "latency_ms": {
            "p50": percentile(&totals, 0.5),
            "p99": percentile(&totals, 0.99),
            "max": totals.last(),
            "stages_p50": stages,
        },
        "cycle_ms": cycle_ms,
        "outside_dropped": s.dropped.load(Ordering::Relaxed),
        "mqtt": mqtt,
    })
}

/// Where a part's overlay can be had: from memory while it is kept, else the archive's.
fn image_url(recent: &std::collections::VecDeque<Arc<Seen>>, id: u64, archived: &[String]) -> Option<String> {
    if recent.iter().any(|s| s.record.id == id && s.image.is_some()) {
        return Some(format!("/api/parts/{id}/overlay.png"));
    }
    let overlay = archived.iter().find(|p| p.ends_with("_overlay.png")).or(archived.first())?;
    let name = std::path::Path::new(overlay).file_name()?.to_str()?;
    Some(format!("/archive/{name}"))
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((last as f64) * q).round() as usize])
}

fn stage_medians<'a>(lat: impl Iterator<Item = &'a crate::station::records::Latency>) -> serde_json::Value {
    let mut stages: [Vec<f64>; 5] = Default::default();
    for l in lat {
        for (v, x) in stages.iter_mut().zip([l.queue, l.capture, l.preprocess, l.infer, l.decide]) {
            v.extend(x);
        }
    }
    let mut out = serde_json::Map::new();
    for (name, mut v) in ["queue", "capture", "preprocess", "infer", "decide"].into_iter().zip(stages) {
        v.sort_by(f64::total_cmp);
        out.insert(name.into(), json!(percentile(&v, 0.5)));
    }
    out.into()
}

/// The mean time between the kept parts' triggers.
fn cycle_ms<'a>(triggered: impl Iterator<Item = &'a str>) -> Option<f64> {
    let times: Vec<SystemTime> = triggered.filter_map(|t| humantime::parse_rfc3339(t).ok()).collect();
    let (first, last) = (times.first()?, times.last()?);
    let span = last.duration_since(*first).ok()?;
    (times.len() > 1).then(|| span.as_secs_f64() * 1e3 / (times.len() - 1) as f64)
}

fn find(s: &Shared, id: u64) -> Option<Arc<Seen>> {
    s.view().recent.iter().rev().find(|seen| seen.record.id == id).cloned()
}

async fn part_record(State(s): State<Shd>, Path(id): Path<u64>) -> Response {
    if let Some(seen) = find(&s, id) {
        return json_response(json!(seen.record));
    }
    let kept = s.view().rejects.iter().find(|r| r.id == id).cloned();
    match kept {
        Some(r) => json_response(json!(r)),
        None => (StatusCode::NOT_FOUND, "no such part in memory").into_response(),
    }
}

async fn overlay(State(s): State<Shd>, Path(id): Path<u64>) -> Response {
    let Some(seen) = find(&s, id) else {
        let archived = s.view().rejects.iter().find(|r| r.id == id).map(|r| r.archived.clone());
        return match archived.and_then(|a| image_url(&Default::default(), id, &a)) {
            Some(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response(),
            None => (StatusCode::NOT_FOUND, "no image of this part in memory or the archive").into_response(),
        };
    };
    let drawn = tokio::task::spawn_blocking(move || s.overlay_png(&seen)).await.ok().flatten();
    png_response(drawn)
}

async fn frame(State(s): State<Shd>, Path(id): Path<u64>) -> Response {
    let seen = find(&s, id);
    let drawn = tokio::task::spawn_blocking(move || seen.and_then(|seen| seen.image.as_ref().and_then(png))).await.ok().flatten();
    png_response(drawn)
}

fn png_response(png: Option<Vec<u8>>) -> Response {
    match png {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "max-age=3600")], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "no image of this part in memory").into_response(),
    }
}

/// An archived image, by its file name in the archive folder; anything else is refused.
async fn archived(State(s): State<Shd>, Path(name): Path<String>) -> Response {
    let Some(dir) = s.archive_dir.clone() else {
        return (StatusCode::NOT_FOUND, "the station keeps no archive").into_response();
    };
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.ends_with(".png");
    if !plain {
        return (StatusCode::FORBIDDEN, "only an image file of the archive folder, by its name").into_response();
    }
    let read = tokio::task::spawn_blocking(move || {
        // A link inside the folder that points out of it is refused too.
        let root = dir.canonicalize().ok()?;
        let path = dir.join(&name).canonicalize().ok()?;
        if !path.starts_with(&root) {
            return Some(Err(()));
        }
        std::fs::read(path).ok().map(Ok)
    })
    .await
    .ok()
    .flatten();
    match read {
        Some(Ok(bytes)) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        Some(Err(())) => (StatusCode::FORBIDDEN, "outside the archive folder").into_response(),
        None => (StatusCode::NOT_FOUND, "no such file in the archive").into_response(),
    }
}

/// Resets the page's counters (since-reset figures; the metrics and records keep
/// counting): needs `Authorization: Bearer <reset_token>`.
async fn reset(State(s): State<Shd>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let Some(token) = s.web.as_ref().and_then(|w| w.reset_token.as_deref()) else {
        return (StatusCode::FORBIDDEN, "read-only: the station file sets no web.reset_token").into_response();
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|h: &HeaderValue| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
    if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        return (StatusCode::UNAUTHORIZED, "a valid reset token is needed").into_response();
    }
    let counts = s.metrics.counts();
    {
        let mut v = s.view();
        v.baseline = counts;
        v.reset_at = Some(SystemTime::now());
    }
    s.bump();
    log::info!("web: counters reset by {peer} (at {} parts)", counts.parts);
    json_response(json!({"reset": true, "parts": counts.parts}))
}

/// Compares in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A PNG of the image, fast compression (drawn per request, for a screen).
pub fn png(img: &RgbImage) -> Option<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    );
    enc.write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8).ok()?;
    Some(out)
}
