//! The station file's sections, one small reader each (a method of
//! [`Reader`](super::reader::Reader)), grouped by what they describe, and the directory of
//! every table and its keys that unknown-key messages use to say where a key belongs.

mod cross;
mod hardware;
mod inspection;
mod outside;
mod runtime;
mod storage;

use hardware::*;
use inspection::*;
use outside::*;
use runtime::*;
use storage::*;

use super::reader::Tables;

/// The top-level tables, in the order the example file shows them.
pub(super) const SECTIONS: &[&str] = &[
    "station", "model", "camera", "light", "trigger", "decision", "alignment", "gpio", "reject", "outputs",
    "records", "archive", "logging", "pipeline", "web", "mqtt",
];

/// Every table and its keys, to say where a key put in the wrong table belongs.
pub(super) const TABLES: Tables = &[
    ("station", STATION_KEYS),
    ("model", MODEL_KEYS),
    ("camera", CAMERA_KEYS),
    ("camera.replay", REPLAY_KEYS),
    ("light", LIGHT_KEYS),
    ("trigger", TRIGGER_KEYS),
    ("decision", DECISION_KEYS),
    ("alignment", ALIGNMENT_KEYS),
    ("gpio", GPIO_KEYS),
    ("reject", REJECT_KEYS),
    ("outputs.pass", PASS_KEYS),
    ("outputs.ready", SIGNAL_KEYS),
    ("outputs.fault", SIGNAL_KEYS),
    ("records", RECORDS_KEYS),
    ("archive", ARCHIVE_KEYS),
    ("logging", LOGGING_KEYS),
    ("pipeline", PIPELINE_KEYS),
    ("web", WEB_KEYS),
    ("mqtt", MQTT_KEYS),
];

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_cases, Expected};

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "the required keys missing",
                "[station]\nname = \"x\"\n".to_string(),
                &[
                    (None, "model.bundle", "required"),
                    (None, "reject.line", "required"),
                ],
            ),
        ];
        assert_cases(cases);
    }
}
