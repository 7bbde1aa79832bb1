//! What SIGHUP can apply. Decision and timing settings take effect from the next part;
//! everything else (model, camera, GPIO lines, folders, pipeline) is opened once at start-up
//! and needs a restart.

use super::schema::*;

/// The dotted keys that differ between `old` and `new` and are NOT reloadable: SIGHUP
/// cannot apply them, they take effect only after a restart. In file order, for "changed
/// but needs a restart: camera.width, ...". Empty when every change can be reloaded.
///
/// Every struct is destructured without `..`: a field added to the schema is a compile
/// error here until someone decides whether it is reloadable.
pub fn changes_needing_restart(old: &StationConfig, new: &StationConfig) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |key: &str, differs: bool| {
        if differs {
            changed.push(key.to_string());
        }
    };

    let StationConfig {
        station,
        model,
        camera,
        light,
        trigger,
        decision: _, // reloadable
        alignment,
        gpio,
        outputs,
        records,
        archive,
        logging,
        pipeline,
        web,
        mqtt,
    } = old;

    let StationInfo { name } = station;
    check("station.name", *name != new.station.name);

    let ModelConfig {
        bundle,
        expert,
        models_dir,
        device,
        batch,
    } = model;
    let m = &new.model;
    check("model.batch", *batch != m.batch);
    check("model.bundle", *bundle != m.bundle);
    check("model.expert", *expert != m.expert);
    check("model.models_dir", *models_dir != m.models_dir);
    check("model.device", *device != m.device);

    // The reference frame is loaded at start-up; its thresholds go with it.
    let AlignmentConfig { enabled, min_confidence, max_shift_px } = alignment;
    let a = &new.alignment;
    check("alignment.enabled", *enabled != a.enabled);
    check("alignment.min_confidence", *min_confidence != a.min_confidence);
    check("alignment.max_shift_px", *max_shift_px != a.max_shift_px);

    let CameraConfig {
        source,
        device,
        width,
        height,
        fps,
        format,
        exposure_us,
        gain,
        white_balance_k,
        timeout,
        reconnect_initial,
        reconnect_max,
        replay,
    } = camera;
    let c = &new.camera;
    check("camera.source", *source != c.source);
    check("camera.device", *device != c.device);
    check("camera.width", *width != c.width);
    check("camera.height", *height != c.height);
    check("camera.fps", *fps != c.fps);
    check("camera.format", *format != c.format);
    check("camera.exposure_us", *exposure_us != c.exposure_us);
    check("camera.gain", *gain != c.gain);
    check(
        "camera.white_balance_k",
        *white_balance_k != c.white_balance_k,
    );
    check("camera.timeout_ms", *timeout != c.timeout);
    check(
        "camera.reconnect_initial_ms",
        *reconnect_initial != c.reconnect_initial,
    );
    check("camera.reconnect_max_ms", *reconnect_max != c.reconnect_max);
    let ReplayConfig {
        folder,
        looping,
        stall_after,
        stall_for,
    } = replay;
    check("camera.replay.folder", *folder != c.replay.folder);
    check("camera.replay.loop", *looping != c.replay.looping);
    check(
        "camera.replay.stall_after",
        *stall_after != c.replay.stall_after,
    );
    check("camera.replay.stall_ms", *stall_for != c.replay.stall_for);

    let LightConfig {
        mode,
        output,
        settle: _,
    } = light; // settle: reloadable
    check("light.mode", *mode != new.light.mode);
    output_changes(
        &mut check,
        "light",
        output.as_ref(),
        new.light.output.as_ref(),
    );

    let TriggerConfig {
        mode,
        input,
        rate_hz: _,
    } = trigger; // rate: reloadable
    check("trigger.mode", *mode != new.trigger.mode);
    match (input, &new.trigger.input) {
        (Some(a), Some(b)) => {
            check("trigger.line", a.line != b.line);
            check("trigger.active_low", a.active_low != b.active_low);
            check("trigger.debounce_ms", a.debounce != b.debounce);
        }
        // A sensor added or removed: the line is what changed.
        (a, b) => check("trigger.line", a.is_some() != b.is_some()),
    }

    let GpioConfig {
        backend,
        edge_log,
        inject_ms,
    } = gpio;
    check("gpio.backend", *backend != new.gpio.backend);
    check("gpio.edge_log", *edge_log != new.gpio.edge_log);
    check("gpio.inject_ms", *inject_ms != new.gpio.inject_ms);

    // Delays and pulse widths are reloadable; which lines are driven is not.
    let OutputsConfig {
        reject,
        reject_delay: _,
        reject_pulse: _,
        pass,
        pass_pulse: _,
        ready,
        fault,
    } = outputs;
    let o = &new.outputs;
    output_changes(&mut check, "reject", Some(reject), Some(&o.reject));
    output_changes(&mut check, "outputs.pass", pass.as_ref(), o.pass.as_ref());
    output_changes(
        &mut check,
        "outputs.ready",
        ready.as_ref(),
        o.ready.as_ref(),
    );
    output_changes(
        &mut check,
        "outputs.fault",
        fault.as_ref(),
        o.fault.as_ref(),
    );

    let RecordsConfig {
        dir,
        max_bytes,
        keep,
    } = records;
    check("records.dir", *dir != new.records.dir);
    check("records.max_mib", *max_bytes != new.records.max_bytes);
    check("records.keep", *keep != new.records.keep);

    let ArchiveConfig {
        dir,
        rejects,
        pass_every,
        max_files,
        max_bytes,
    } = archive;
    let a = &new.archive;
    check("archive.dir", *dir != a.dir);
    check("archive.rejects", *rejects != a.rejects);
    check("archive.pass_every", *pass_every != a.pass_every);
    check("archive.max_files", *max_files != a.max_files);
    check("archive.max_mib", *max_bytes != a.max_bytes);

    let LoggingConfig {
        level,
        counters_every: _,
    } = logging; // counters: reloadable
    check("logging.level", *level != new.logging.level);

    let PipelineConfig {
        queue_depth,
        drain_timeout,
        stall_timeout,
        inject_infer_delay,
    } = pipeline;
    let p = &new.pipeline;
    check("pipeline.queue_depth", *queue_depth != p.queue_depth);
    check(
        "pipeline.drain_timeout_ms",
        *drain_timeout != p.drain_timeout,
    );
    check(
        "pipeline.stall_timeout_ms",
        *stall_timeout != p.stall_timeout,
    );
    check(
        "pipeline.inject_infer_delay_ms",
        *inject_infer_delay != p.inject_infer_delay,
    );

    // The web server and the broker connection are set up once, at start.
    match (web, &new.web) {
        (Some(a), Some(b)) => {
            let WebConfig { listen, reset_token, recent_parts, trend_parts } = a;
            check("web.listen", *listen != b.listen);
            check("web.reset_token", *reset_token != b.reset_token);
            check("web.recent_parts", *recent_parts != b.recent_parts);
            check("web.trend_parts", *trend_parts != b.trend_parts);
        }
        (a, b) => check("web", a.is_some() != b.is_some()),
    }
    match (mqtt, &new.mqtt) {
        (Some(a), Some(b)) => {
            let MqttConfig {
                host,
                port,
                client_id,
                topic_prefix,
                qos,
                username,
                password,
                ca_file,
                client_cert,
                client_key,
                buffer_parts,
                keep_alive,
            } = a;
            check("mqtt.host", *host != b.host);
            check("mqtt.port", *port != b.port);
            check("mqtt.client_id", *client_id != b.client_id);
            check("mqtt.topic_prefix", *topic_prefix != b.topic_prefix);
            check("mqtt.qos", *qos != b.qos);
            check("mqtt.username", *username != b.username);
            check("mqtt.password", *password != b.password);
            check("mqtt.ca_file", *ca_file != b.ca_file);
            check("mqtt.client_cert", *client_cert != b.client_cert);
            check("mqtt.client_key", *client_key != b.client_key);
            check("mqtt.buffer_parts", *buffer_parts != b.buffer_parts);
            check("mqtt.keep_alive_s", *keep_alive != b.keep_alive);
        }
        (a, b) => check("mqtt", a.is_some() != b.is_some()),
    }

    changed
}

fn output_changes(
    check: &mut impl FnMut(&str, bool),
    table: &str,
    old: Option<&OutputLine>,
    new: Option<&OutputLine>,
) {
    match (old, new) {
        (Some(a), Some(b)) => {
            check(&format!("{table}.line"), a.line != b.line);
            check(&format!("{table}.active_low"), a.active_low != b.active_low);
        }
        // An output added or removed: the line is what changed.
        (a, b) => check(&format!("{table}.line"), a.is_some() != b.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse_with, LoadOptions};

    fn station(extra: &str) -> StationConfig {
        let text = format!("[model]\nbundle = \"b\"\n[reject]\nline = \"gpiochip0:20\"\n{extra}");
        let options = LoadOptions { check_files: false };
        parse_with(&text, Path::new("station.toml"), options).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn decision_and_timing_changes_reload_without_a_restart() {
        let old = station("");
        let new = station(
            "delay_ms = 250\npulse_ms = 80\n[decision]\nthreshold = 0.3\nmin_area_px = 9\n\
             [light]\nsettle_ms = 9\n[trigger]\nrate_hz = 4\n[logging]\ncounters_every_s = 5\n\
             [outputs.pass]\nline = \"gpiochip0:21\"\npulse_ms = 10\n",
        );
        // Only adding the pass output's line needs a restart; its pulse would not.
        assert_eq!(changes_needing_restart(&old, &new), ["outputs.pass.line"]);
        let with_pass = station("[outputs.pass]\nline = \"gpiochip0:21\"\n");
        assert!(changes_needing_restart(&with_pass, &new).is_empty());
    }

    /// SIGHUP reads the file again with the same `config::load` as start-up: a reloadable
    /// value outside its limits is refused there, so a reload can never apply it (the
    /// daemon keeps the running settings), and neither can a bundle gone bad.
    #[test]
    fn a_reload_with_a_value_out_of_its_limits_is_refused_by_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let write_bundle = |meta: &crate::bundle::BundleMeta| {
            std::fs::create_dir_all(&bundle).unwrap();
            let text = toml::to_string(meta).unwrap();
            std::fs::write(bundle.join(crate::bundle::META_FILE), text).unwrap();
            std::fs::write(bundle.join(crate::bundle::WEIGHTS_FILE), b"").unwrap();
        };
        write_bundle(&crate::bundle::example_meta());
        let path = dir.path().join("station.toml");
        let load = |extra: &str| {
            let text = format!("[model]\nbundle = \"bundle\"\n[reject]\nline = \"gpiochip0:20\"\n{extra}");
            std::fs::write(&path, text).unwrap();
            crate::config::load(&path)
        };
        let good = load("delay_ms = 250\n[trigger]\nrate_hz = 4\n").unwrap();
        let cases = [
            ("[trigger]\nrate_hz = 1e-300\n", "trigger.rate_hz", "must be >= 0.01 Hz (got 1e-300)"),
            ("[trigger]\nrate_hz = 1e9\n", "trigger.rate_hz", "must be <= 1000 Hz (got 1000000000)"),
            ("delay_ms = 9223372036854775807\n", "reject.delay_ms", "must be <= 60000 ms"),
            ("pulse_ms = 3600000\n", "reject.pulse_ms", "must be <= 10000 ms"),
            ("[outputs.pass]\nline = \"gpiochip0:21\"\npulse_ms = 0\n", "outputs.pass.pulse_ms", "must be > 0 ms"),
            ("[light]\nsettle_ms = 86400000\n", "light.settle_ms", "must be <= 1000 ms"),
            ("[logging]\ncounters_every_s = 4294967296\n", "logging.counters_every_s", "must be <= 86400 s"),
            ("[decision]\nthreshold = nan\n", "decision.threshold", "must be a finite number (got nan)"),
            ("[decision]\nthreshold = 1e6\n", "decision.threshold", "must be <= 2 (got 1000000)"),
            ("[decision]\npixel_threshold = -1\n", "decision.pixel_threshold", "must be >= 0 (got -1)"),
            ("[decision]\nmin_area_px = 0\n", "decision.min_area_px", "must be > 0 px"),
        ];
        for (extra, key, message) in cases {
            let errors = load(extra).expect_err(extra).errors;
            assert_eq!(errors.len(), 1, "{extra}: {errors:?}");
            assert_eq!(errors[0].key, key, "{extra}");
            assert!(errors[0].message.starts_with(message), "{extra}: {}", errors[0]);
        }
        // The bundle is read again too: a threshold gone bad in it is refused.
        let mut meta = crate::bundle::example_meta();
        meta.calibration.as_mut().unwrap().threshold = f32::NAN;
        write_bundle(&meta);
        let errors = load("").unwrap_err().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "model.bundle");
        assert!(
            errors[0].message.ends_with("model.toml: calibration.threshold: must be a finite anomaly score in [0, 2], got NaN"),
            "{}",
            errors[0]
        );
        assert!(changes_needing_restart(&good, &good).is_empty());
    }

    #[test]
    fn other_changes_are_named_by_their_keys() {
        let old = station("");
        let mut new = station(
            "active_low = true\n[camera]\nwidth = 640\n[camera.replay]\nloop = true\n\
             [trigger]\nmode = \"gpio\"\nline = \"gpiochip0:17\"\n[pipeline]\nqueue_depth = 8\n",
        );
        new.model.bundle = "other".into();
        assert_eq!(
            changes_needing_restart(&old, &new),
            [
                "model.bundle",
                "camera.width",
                "camera.replay.loop",
                "trigger.mode",
                "trigger.line",
                "reject.active_low",
                "pipeline.queue_depth",
            ]
        );
    }

    #[test]
    fn the_web_view_and_the_broker_need_a_restart() {
        let old = station("[mqtt]\nhost = \"a\"\n");
        let new = station("[web]\n[mqtt]\nhost = \"b\"\nqos = 2\n");
        assert_eq!(changes_needing_restart(&old, &new), ["web", "mqtt.host", "mqtt.qos"]);
    }
}
