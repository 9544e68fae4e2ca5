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
use std::io::IsTerminal as _;

use serde::{Deserialize, Deserializer};

/// The environment variable a filter is read from when no flag gives one.
pub const ENV: &str = "PATCHWARD_LOG";

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// `AT LEVEL span{fields}: message key=value`, for people.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`,
    /// the current span and its parents), for log shippers.
    Json,
}

/// Starts logging for the process: the filter from `flag`, else
/// [`ENV`], else `default`. Fails on a filter that does not parse, saying
/// where it came from; a second call is refused.
pub fn init(flag: Option<&str>, default: &str, output: Output) -> Result<(), String> {
    let from_env = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let (filter, origin) = match (flag, from_env) {
        (Some(flag), _) => (flag.to_owned(), "--log"),
        (None, Some(env)) => (env, ENV),
        (None, None) => (default.to_owned(), "the default"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("the log filter {filter:?} (from {origin}) does not parse: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match output {
        Output::Human => builder.try_init(),
        Output::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
    installed.map_err(|e| format!("logging was already started: {e}"))
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
}
