//! Logs for both binaries, through `tracing`: levels, a filter by module,
//! human lines on a terminal or JSON lines, spans, and the warnings of the
//! libraries underneath (hyper, reqwest, rustls log through `tracing` or
//! `log`; both come through).
//!
//! The filter is `tracing`'s `EnvFilter` syntax: a level (`info`), or
//! levels by module (`warn,patchward::daemon=debug,patchward_agent::repo=trace`).
//! It comes from the `--log` flag, else the `PATCHWARD_LOG` environment
//! variable, else the binary's default. Everything goes to standard error
//! (systemd hands it to the journal); colours only when that is a terminal.
//!
//! Secrets never reach a log: tokens, credentials and keys are held in a
//! [`Secret`], whose `Debug` and `Display` print `***` and which has no
//! `Serialize`; [`Secret::expose`] names every place that needs the bytes.

use std::fmt;
use std::io::{self, IsTerminal as _};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer};
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::{MakeWriter, layer as fmt_layer};
use tracing_subscriber::layer::SubscriberExt as _;

/// The environment variable a filter is read from when no flag gives one.
pub const ENV: &str = "PATCHWARD_LOG";

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// `AT LEVEL span{fields}: message key=value`, for people.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `message`, the
    /// event's fields, `target`, the current span and its parents), for
    /// log shippers.
    Json,
}

/// Starts logging for the process: the filter from `flag`, else
/// [`ENV`], else `default`. Fails on a filter that does not parse, saying
/// where it came from; a second call is refused.
pub fn init(flag: Option<&str>, default: &str, output: Output) -> Result<(), String> {
    let filter = filter(flag, default)?;
    let dispatch = dispatch(filter, output, std::io::stderr, std::io::stderr().is_terminal());
    tracing::dispatcher::set_global_default(dispatch).map_err(|e| format!("logging was already started: {e}"))?;
    // Libraries that log through `log` (not `tracing`) come through too.
    tracing_log::LogTracer::init().map_err(|e| format!("logging was already started: {e}"))
}

/// The filter from `flag`, else [`ENV`], else `default`.
fn filter(flag: Option<&str>, default: &str) -> Result<EnvFilter, String> {
    let from_env = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let (filter, origin) = match (flag, from_env) {
        (Some(flag), _) => (flag.to_owned(), "--log"),
        (None, Some(env)) => (env, ENV),
        (None, None) => (default.to_owned(), "the default"),
    };
    EnvFilter::try_new(&filter).map_err(|e| format!("the log filter {filter:?} (from {origin}) does not parse: {e}"))
}

/// One subscriber, for the process or a test. JSON lines carry the
/// event's fields at the top level (`timestamp`, `level`, `message`, the
/// fields, `target`, and the spans it happened in).
fn dispatch<W>(filter: EnvFilter, output: Output, writer: W, ansi: bool) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match output {
        Output::Human => Dispatch::new(registry.with(fmt_layer().with_writer(writer).with_ansi(ansi))),
        Output::Json => Dispatch::new(registry.with(
            fmt_layer().json().flatten_event(true).with_current_span(true).with_span_list(true).with_writer(writer),
        )),
    }
}

/// A subscriber that writes into memory, for tests: install it with
/// `tracing::dispatcher::set_default` (this thread) or
/// `tracing::instrument::WithSubscriber` (a future).
pub fn capture(level: &str, output: Output) -> (Dispatch, Captured) {
    let captured = Captured::default();
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("trace"));
    (dispatch(filter, output, captured.clone(), false), captured)
}

/// What a [`capture`] subscriber wrote.
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

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Captured {
    type Writer = Captured;

    fn make_writer(&'w self) -> Captured {
        self.clone()
    }
}

/// A credential, token or key. Printing it, in any way `Debug`, `Display`
/// or a log knows, gives `***`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself, for the one place that must send or store it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret<T>, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

/// For the one file a secret is stored in (`#[serde(serialize_with)]`):
/// writes the secret itself.
pub fn serialize_exposed<S: serde::Serializer>(secret: &Secret<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("pwc_do-not-print".to_owned());
        assert_eq!(format!("{secret} {secret:?} {:?}", Some(&secret)), "*** *** Some(***)");
        assert_eq!(secret.expose(), "pwc_do-not-print");
    }

    #[test]
    fn a_filter_that_does_not_parse_says_where_it_came_from() {
        let error = init(Some("info,patchward=loud"), "info", Output::Human).unwrap_err();
        assert!(error.contains("--log") && error.contains("loud"), "{error}");
    }

    #[test]
    fn a_json_line_has_the_fields_at_the_top_and_its_spans() {
        let (dispatch, out) = capture("info", Output::Json);
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("item", id = "pw-1");
            let _entered = span.enter();
            tracing::info!(uid = 1000u32, token = %Secret::new("s3cr3t"), "snoozed");
            tracing::debug!("dropped below the level");
        });
        let lines = out.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["message"], "snoozed");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["uid"], 1000);
        assert_eq!(line["token"], "***");
        assert_eq!(line["span"]["id"], "pw-1");
    }
}
