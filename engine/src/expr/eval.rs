//! Evaluating CEL: programs compiled once per policy revision, patches and
//! devices converted to CEL values once, and patchward's helpers
//! (`versionAtLeast`, `daysSince`). The functions registered here are
//! exactly those `check.rs` lets through validation.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};

/// The environment every program compiles and runs in: the standard
/// library and the string, list and math extensions.
pub fn environment() -> Arc<Env> {
    let mut env = Env::stdlib();
    for extension in [cel::extensions::strings, cel::extensions::lists, cel::extensions::math] {
        env.add_extension(extension).expect("the bundled extensions register once");
    }
    Arc::new(env)
}

/// A compiled `match` or `selector`.
pub struct CompiledExpr {
    program: Program,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Compile(String),
    #[error("evaluation failed: {0}")]
    Runtime(String),
    #[error("the expression gave {0}, not true or false")]
    NotBool(String),
}

impl CompiledExpr {
    pub fn compile(env: &Env, source: &str) -> Result<CompiledExpr, EvalError> {
        env.compile(source).map(|program| CompiledExpr { program }).map_err(|e| EvalError::Compile(e.to_string()))
    }

    /// Evaluates to a boolean with `bindings` as variables and `now` for
    /// `now` and `daysSince`.
    pub fn evaluate(
        &self,
        env: &Arc<Env>,
        bindings: &[(&str, &Value)],
        now: jiff::Timestamp,
    ) -> Result<bool, EvalError> {
        let mut context = Context::with_env(Arc::clone(env));
        for (name, value) in bindings {
            context.add_variable_from_value(*name, (*value).clone());
        }
        context.add_variable_from_value("now", timestamp(now));
        context.add_function("versionAtLeast", version_at_least).expect("no CEL overload is named versionAtLeast");
        context
            .add_function("daysSince", move |since: Value| days_since(&since, now))
            .expect("no CEL overload is named daysSince");
        match self.program.execute(&context) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(EvalError::NotBool(format!("{other:?}"))),
            Err(e) => Err(EvalError::Runtime(e.to_string())),
        }
    }
}

fn version_at_least(a: Arc<String>, b: Arc<String>, scheme: Arc<String>) -> Result<bool, cel::ExecutionError> {
    let scheme = patchward_api::VersionScheme::parse(&scheme).ok_or_else(|| {
        cel::ExecutionError::function_error(
            "versionAtLeast",
            format!("unknown scheme `{scheme}`; use dpkg, rpm or windows"),
        )
    })?;
    Ok(patchward_api::version_at_least(&a, &b, scheme))
}

/// Whole days from `since` (a timestamp, or an RFC 3339 string) to `now`.
fn days_since(since: &Value, now: jiff::Timestamp) -> Result<i64, cel::ExecutionError> {
    let seconds = match since {
        Value::Timestamp(t) => t.timestamp(),
        Value::String(text) => text
            .parse::<jiff::Timestamp>()
            .map_err(|e| cel::ExecutionError::function_error("daysSince", e.to_string()))?
            .as_second(),
        other => return Err(cel::ExecutionError::function_error("daysSince", format!("not a timestamp: {other:?}"))),
    };
    Ok((now.as_second() - seconds).div_euclid(86_400))
}

/// A jiff instant as a CEL timestamp.
pub fn timestamp(t: jiff::Timestamp) -> Value {
    let utc = chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32).unwrap_or_default();
    Value::Timestamp(utc.fixed_offset())
}

/// A JSON value as a CEL value; strings in `timestamp_fields` (at the top
/// level) become timestamps, so `patch.released` compares with `now`.
pub fn from_json(value: &serde_json::Value, timestamp_fields: &[&str]) -> Value {
    match value {
        serde_json::Value::Object(map) => {
            let entries: HashMap<String, Value> = map
                .iter()
                .map(|(key, value)| {
                    let converted = match value {
                        serde_json::Value::String(text) if timestamp_fields.contains(&key.as_str()) => text
                            .parse::<jiff::Timestamp>()
                            .map(timestamp)
                            .unwrap_or_else(|_| Value::from(text.as_str())),
                        other => from_json(other, &[]),
                    };
                    (key.clone(), converted)
                })
                .collect();
            Value::from(entries)
        }
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(|v| from_json(v, &[])).collect())),
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
    }
}

/// The engine-level timestamp fields of a patch.
pub const PATCH_TIMESTAMPS: &[&str] = &["released", "firstSeen", "obsoleteSince"];

#[cfg(test)]
mod tests {
    use super::*;

    fn patch() -> Value {
        from_json(
            &serde_json::json!({
                "id": "DSA-1", "severity": "high", "category": "security", "product": "Java 8",
                "cvss": {"vector": "CVSS:3.1/AV:N", "score": 7.5}, "cves": ["CVE-2026-1", "CVE-2026-2"],
                "released": "2026-11-01T00:00:00Z", "obsoleteSince": null,
                "fixes": [{"manager": "dpkg", "package": "openssl", "fixedVersion": "3.0.15-1~deb12u1"}]
            }),
            PATCH_TIMESTAMPS,
        )
    }

    fn eval(source: &str) -> Result<bool, EvalError> {
        let env = environment();
        let expr = CompiledExpr::compile(&env, source)?;
        let patch = patch();
        expr.evaluate(&env, &[("patch", &patch)], "2026-11-24T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn evaluates_rule_expressions_over_a_patch() {
        assert_eq!(eval(r#"patch.severity == "high" && patch.category == "security""#), Ok(true));
        assert_eq!(eval(r#"patch.product.startsWith("Java")"#), Ok(true));
        assert_eq!(eval(r#"patch.cves.exists(c, c == "CVE-2026-2") && patch.cvss.score >= 7.0"#), Ok(true));
        assert_eq!(eval("patch.released < now"), Ok(true));
        assert_eq!(eval("daysSince(patch.released) == 23"), Ok(true));
        assert_eq!(eval(r#"patch.fixes.all(f, versionAtLeast(f.fixedVersion, "3.0.14", "dpkg"))"#), Ok(true));
        assert_eq!(eval(r#"versionAtLeast("3.0.15-1~deb12u1", "3.0.15-1", "dpkg")"#), Ok(false));
        assert!(eval(r#"patch.title.lowerAscii() == "x""#).is_err(), "no such field: an error, not false");
    }

    #[test]
    fn runtime_errors_and_non_booleans_are_errors_not_answers() {
        assert!(matches!(eval(r#"versionAtLeast("1", "2", "msi")"#), Err(EvalError::Runtime(_))));
        assert!(matches!(eval("patch.cvss.score"), Err(EvalError::NotBool(_))));
        assert!(matches!(eval("patch.nope == 1"), Err(EvalError::Runtime(_))));
    }

    /// Every function validation accepts is registered for evaluation.
    #[test]
    fn the_checked_function_list_matches_the_environment() {
        for source in [
            r#"size("a") == 1"#,
            r#""abc".contains("b") && "abc".startsWith("a") && "abc".endsWith("c") && "abc".matches("^a")"#,
            r#"int("1") == 1 && string(1) == "1" && double(1) == 1.0"#,
            r#""ABC".lowerAscii() == "abc" && "abc".upperAscii() == "ABC" && " a ".trim() == "a""#,
            r#""a,b".split(",").size() == 2 && ["a", "b"].join("-") == "a-b" && "abc".indexOf("b") == 1"#,
            r#""abc".substring(1) == "bc" && "abc".charAt(0) == "a" && "aa".replace("a", "b") == "bb""#,
            r#"[1, 1, 2].distinct().size() == 2 && [[1], [2]].flatten().size() == 2 && [2, 1].sort()[0] == 1"#,
            r#"math.greatest(1, 2) == 2 && math.least(1, 2) == 1"#,
            r#"timestamp("2026-01-01T00:00:00Z").getFullYear() == 2026"#,
        ] {
            assert_eq!(eval(source), Ok(true), "{source}");
        }
    }
}
