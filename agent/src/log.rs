//! The agent's structured logs: one line per event, to stderr (which
//! systemd hands to the journal), as JSON lines or as `key=value` text.
//!
//! A JSON line is `{"at": RFC3339 UTC, "level": "info", "msg": "...",
//! ...fields}`; a text line is `AT LEVEL msg key=value ...`, values quoted
//! when they hold spaces, quotes or `=`. The field names `at`, `level` and
//! `msg` belong to the line itself: a field so named is written with a
//! trailing `_` rather than overwrite them.
//!
//! Secrets never reach a log: credentials and tokens are kept in a
//! [`Secret`], whose `Debug`, `Display` and [`LogValue`] all print `***`, and
//! which has no `Serialize`, so it cannot be logged through `serde` either.
//! The only way to the bytes is [`Secret::expose`], which names what it does
//! at every call site.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::observe::{Clock, SystemClock};

/// How severe a line is, and how lines are written: the config file's
/// `log.level` and `log.format`.
pub use patchward_api::agent_config::{LogFormat as Format, LogLevel as Level};

/// A credential or token: one type for both binaries, which prints `***`.
pub use patchward_api::logging::Secret;

pub trait LogValue {
    fn to_log_value(&self) -> Value;
}

impl<T: LogValue + ?Sized> LogValue for &T {
    fn to_log_value(&self) -> Value {
        (**self).to_log_value()
    }
}

impl<T> LogValue for Secret<T> {
    fn to_log_value(&self) -> Value {
        Value::String("***".to_owned())
    }
}

impl LogValue for str {
    fn to_log_value(&self) -> Value {
        Value::String(self.to_owned())
    }
}

impl LogValue for String {
    fn to_log_value(&self) -> Value {
        Value::String(self.clone())
    }
}

impl LogValue for bool {
    fn to_log_value(&self) -> Value {
        Value::Bool(*self)
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl LogValue for $t {
            fn to_log_value(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}
numbers!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f64);

impl LogValue for Path {
    fn to_log_value(&self) -> Value {
        Value::String(self.display().to_string())
    }
}

impl LogValue for PathBuf {
    fn to_log_value(&self) -> Value {
        self.as_path().to_log_value()
    }
}

impl LogValue for Timestamp {
    fn to_log_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

impl LogValue for std::time::Duration {
    fn to_log_value(&self) -> Value {
        Value::String(format!("{:?}", self))
    }
}

impl<T: LogValue> LogValue for Option<T> {
    fn to_log_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, LogValue::to_log_value)
    }
}

/// Logs anything by its `Display` text (an error, a URL already stripped
/// of credentials, a command line).
pub struct Shown<T>(pub T);

impl<T: fmt::Display> LogValue for Shown<T> {
    fn to_log_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// One key and its value.
pub type Field<'a> = (&'a str, &'a dyn LogValue);

type Sink = Arc<Mutex<dyn Write + Send>>;

/// Writes log lines at or above its level. Cheap to clone; clones share
/// the sink, so lines from several tasks never interleave mid-line.
#[derive(Clone)]
pub struct Logger {
    level: Level,
    format: Format,
    sink: Sink,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger").field("level", &self.level).field("format", &self.format).finish_non_exhaustive()
    }
}

impl Default for Logger {
    /// Text at `info` to stderr: what the agent logs before its config is read.
    fn default() -> Logger {
        Logger::stderr(Format::Text, Level::Info)
    }
}

impl Logger {
    pub fn stderr(format: Format, level: Level) -> Logger {
        Logger::to_writer(format, level, io::stderr(), Arc::new(SystemClock))
    }

    pub fn to_writer(
        format: Format,
        level: Level,
        writer: impl Write + Send + 'static,
        clock: Arc<dyn Clock>,
    ) -> Logger {
        Logger { level, format, sink: Arc::new(Mutex::new(writer)), clock }
    }

    /// A logger into memory, and the handle to read what it wrote (tests).
    pub fn capture(format: Format, level: Level, clock: Arc<dyn Clock>) -> (Logger, Captured) {
        let captured = Captured::default();
        (Logger::to_writer(format, level, captured.clone(), clock), captured)
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn enabled(&self, level: Level) -> bool {
        level >= self.level
    }

    pub fn debug(&self, msg: &str, fields: &[Field<'_>]) {
        self.log(Level::Debug, msg, fields);
    }

    pub fn info(&self, msg: &str, fields: &[Field<'_>]) {
        self.log(Level::Info, msg, fields);
    }

    pub fn warn(&self, msg: &str, fields: &[Field<'_>]) {
        self.log(Level::Warn, msg, fields);
    }

    pub fn error(&self, msg: &str, fields: &[Field<'_>]) {
        self.log(Level::Error, msg, fields);
    }

    pub fn log(&self, level: Level, msg: &str, fields: &[Field<'_>]) {
        if !self.enabled(level) {
            return;
        }
        let line = render(self.format, self.clock.now(), level, msg, fields);
        let mut sink = self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A log that cannot be written (stderr closed) must not stop the
        // agent; there is nowhere left to say so.
        let _ = sink.write_all(line.as_bytes()).and_then(|()| sink.flush());
    }
}

/// One rendered line, with its newline.
pub fn render(format: Format, at: Timestamp, level: Level, msg: &str, fields: &[Field<'_>]) -> String {
    let key = |name: &str| -> String {
        if matches!(name, "at" | "level" | "msg") { format!("{name}_") } else { name.to_owned() }
    };
    match format {
        Format::Json => {
            let mut object = Map::new();
            object.insert("at".to_owned(), Value::String(at.to_string()));
            object.insert("level".to_owned(), Value::String(level.as_str().to_owned()));
            object.insert("msg".to_owned(), Value::String(msg.to_owned()));
            for (name, value) in fields {
                object.insert(key(name), value.to_log_value());
            }
            let mut line = Value::Object(object).to_string();
            line.push('\n');
            line
        }
        Format::Text => {
            let mut line = format!("{at} {} {}", level.as_str().to_uppercase(), msg.replace('\n', " "));
            for (name, value) in fields {
                let text = match value.to_log_value() {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                line.push(' ');
                line.push_str(&key(name));
                line.push('=');
                if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
                    line.push_str(&format!("{text:?}"));
                } else {
                    line.push_str(&text);
                }
            }
            line.push('\n');
            line
        }
    }
}

/// What a [`Logger::capture`] logger wrote.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::FakeClock;

    fn at() -> Timestamp {
        "2025-03-04T05:06:07Z".parse().unwrap()
    }

    #[test]
    fn a_json_line_has_at_level_msg_and_the_fields() {
        let (log, out) = Logger::capture(Format::Json, Level::Debug, Arc::new(FakeClock::new(at())));
        log.info("snoozed", &[("item", &"pw-1"), ("left", &2u32), ("msg", &"clash")]);
        let line: Value = serde_json::from_str(&out.lines()[0]).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"at": "2025-03-04T05:06:07Z", "level": "info", "msg": "snoozed",
                "item": "pw-1", "left": 2, "msg_": "clash"})
        );
    }

    #[test]
    fn text_quotes_what_would_split() {
        let line = render(Format::Text, at(), Level::Warn, "x", &[("path", &"/a b"), ("n", &1i32), ("e", &"")]);
        assert_eq!(line, "2025-03-04T05:06:07Z WARN x path=\"/a b\" n=1 e=\"\"\n");
    }

    #[test]
    fn lines_below_the_level_are_dropped() {
        let (log, out) = Logger::capture(Format::Text, Level::Warn, Arc::new(FakeClock::new(at())));
        log.debug("d", &[]);
        log.info("i", &[]);
        log.warn("w", &[]);
        log.error("e", &[]);
        let levels: Vec<String> = out.lines().iter().map(|l| l.split(' ').nth(1).unwrap().to_owned()).collect();
        assert_eq!(levels, ["WARN", "ERROR"]);
    }

    #[test]
    fn a_secret_never_appears() {
        let token = Secret::new("pw_tok_s3cr3t".to_owned());
        for format in [Format::Json, Format::Text] {
            let (log, out) = Logger::capture(format, Level::Debug, Arc::new(FakeClock::new(at())));
            log.info(
                "enrolled",
                &[("token", &token), ("shown", &Shown(&token)), ("debug", &Shown(format!("{token:?}")))],
            );
            let text = out.text();
            assert!(!text.contains("s3cr3t"), "{text}");
            assert_eq!(text.matches("***").count(), 3, "{text}");
        }
        assert_eq!(token.expose(), "pw_tok_s3cr3t");
    }

    #[test]
    fn a_secret_reads_from_serde_like_its_value() {
        #[derive(serde::Deserialize, Debug)]
        struct Credential {
            token: Secret,
        }
        let credential: Credential = serde_json::from_str(r#"{"token": "abc123"}"#).unwrap();
        assert_eq!(credential.token.expose(), "abc123");
        assert_eq!(format!("{credential:?}"), "Credential { token: *** }");
    }
}
