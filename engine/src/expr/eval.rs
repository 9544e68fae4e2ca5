//! Evaluating CEL: programs compiled once per policy revision, patches and
//! devices converted to CEL values once, and patchward's helpers
//! (`versionAtLeast`, `daysSince`). The functions registered here are
//! exactly those `check.rs` lets through validation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Program, Value};

use super::estimate_cost_with;
use super::fast::FastExpr;
pub use super::fast::{FieldValue, JsonRecord, Record};

/// The environment every program compiles and runs in: the standard
/// library and the string, list and math extensions.
pub fn environment() -> Arc<Env> {
    let mut env = Env::stdlib();
    for extension in [cel::extensions::strings, cel::extensions::lists, cel::extensions::math] {
        env.add_extension(extension).expect("the bundled extensions register once");
    }
    Arc::new(env)
}

/// The work one evaluation may do, in [`estimate_cost_with`]'s units,
/// counted with the real lengths of the bound lists before it runs.
pub const MAX_EVALUATION_COST: u64 = 1_000_000;

/// How an expression uses one variable: which of its top-level fields it
/// reads. Two values that agree on those fields give the same answer, which
/// is what lets the planner evaluate once per distinct combination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FieldUse {
    /// The variable is not read.
    #[default]
    Unused,
    /// Only these fields are read (`patch.severity`, `has(device.labels)`).
    Fields(BTreeSet<String>),
    /// The variable is read as a whole (passed to a function, indexed).
    Whole,
}

/// A compiled `match` or `selector`.
pub struct CompiledExpr {
    program: Program,
    /// The fast path, per variable it may be bound to (`patch`, `device`).
    fast: Vec<(&'static str, FastExpr)>,
    /// Cost with every comprehension iterating once; the real bound is
    /// computed per evaluation when the expression has comprehensions.
    base_cost: u64,
    has_comprehension: bool,
    longest_literal_list: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Compile(String),
    #[error("evaluation failed: {0}")]
    Runtime(String),
    #[error("the expression gave {0}, not true or false")]
    NotBool(String),
    #[error("evaluation refused: its estimated cost {cost} over lists of up to {longest} items exceeds {limit}")]
    TooCostly { cost: u64, longest: u64, limit: u64 },
}

impl CompiledExpr {
    pub fn compile(env: &Env, source: &str) -> Result<CompiledExpr, EvalError> {
        let program = env.compile(source).map_err(|e| EvalError::Compile(e.to_string()))?;
        let root = program.expression();
        let fast = ["patch", "device"]
            .into_iter()
            .filter_map(|variable| FastExpr::compile(root, variable).map(|f| (variable, f)))
            .collect();
        Ok(CompiledExpr {
            fast,
            base_cost: estimate_cost_with(&root.expr, 1),
            has_comprehension: has_comprehension(root),
            longest_literal_list: longest_literal_list(root),
            program,
        })
    }

    /// Whether the fast path covers the expression bound as `variable`.
    pub fn has_fast_path(&self, variable: &str) -> bool {
        self.fast.iter().any(|(v, _)| *v == variable)
    }

    /// How the expression uses `variable`.
    pub fn field_use(&self, variable: &str) -> FieldUse {
        let mut usage = FieldUse::Unused;
        collect_field_use(self.program.expression(), variable, &mut Vec::new(), &mut usage);
        usage
    }

    /// The cost bound of one evaluation over values whose longest list has
    /// `longest` items.
    pub fn cost(&self, longest: u64) -> u64 {
        if self.has_comprehension {
            estimate_cost_with(&self.program.expression().expr, longest.max(self.longest_literal_list))
        } else {
            self.base_cost
        }
    }
}

/// A value converted to CEL once, to be bound by reference in any number
/// of evaluations.
pub struct CelValue {
    value: Box<dyn Val>,
    /// The JSON it was made from, for the fast path.
    json: serde_json::Value,
    timestamps: &'static [&'static str],
    /// The longest list or map anywhere inside: the bound on how often a
    /// comprehension over it can iterate.
    longest: u64,
}

impl std::fmt::Debug for CelValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelValue").field("longest", &self.longest).finish_non_exhaustive()
    }
}

impl CelValue {
    /// Converts JSON; strings in `timestamp_fields` (top level) become
    /// timestamps.
    pub fn from_json(json: &serde_json::Value, timestamp_fields: &'static [&'static str]) -> CelValue {
        let value: Box<dyn Val> = from_json(json, timestamp_fields).try_into().expect("every Value converts to a Val");
        CelValue { value, longest: longest_collection(json), json: json.clone(), timestamps: timestamp_fields }
    }

    /// The JSON this value was made from.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }
}

/// Evaluates compiled expressions at one instant. The functions and `now`
/// are registered once; each evaluation binds its variable by reference.
pub struct Evaluator {
    root: Context<'static, 'static>,
    now_value: Box<dyn Val>,
    now: jiff::Timestamp,
    max_cost: u64,
}

struct Bindings<'a> {
    name: &'a str,
    value: &'a dyn Val,
    now: &'a dyn Val,
}

impl VariableResolver for Bindings<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if variable == self.name {
            Some(CowVal::Borrowed(self.value))
        } else if variable == "now" {
            Some(CowVal::Borrowed(self.now))
        } else {
            None
        }
    }
}

impl Evaluator {
    pub fn new(env: &Arc<Env>, now: jiff::Timestamp) -> Evaluator {
        let mut root = Context::with_env(Arc::clone(env));
        root.add_function("versionAtLeast", version_at_least).expect("no CEL overload is named versionAtLeast");
        root.add_function("daysSince", move |since: Value| days_since(&since, now))
            .expect("no CEL overload is named daysSince");
        let now_value: Box<dyn Val> = timestamp(now).try_into().expect("a timestamp converts to a Val");
        Evaluator { root, now_value, now, max_cost: MAX_EVALUATION_COST }
    }

    pub fn with_max_cost(mut self, max_cost: u64) -> Evaluator {
        self.max_cost = max_cost;
        self
    }

    /// Evaluates `expr` to a boolean with `variable` bound to `value`.
    pub fn evaluate(&self, expr: &CompiledExpr, variable: &str, value: &CelValue) -> Result<bool, EvalError> {
        let record = JsonRecord { json: &value.json, timestamps: value.timestamps };
        self.evaluate_in(expr, variable, value, &record)
    }

    /// [`Evaluator::evaluate`], with the fast path reading `record`, which
    /// must hold the same value as `value`.
    pub fn evaluate_in(
        &self,
        expr: &CompiledExpr,
        variable: &str,
        value: &CelValue,
        record: &dyn Record,
    ) -> Result<bool, EvalError> {
        self.check_cost(expr, value)?;
        if let Some((_, fast)) = expr.fast.iter().find(|(v, _)| *v == variable)
            && let Some(answer) = fast.evaluate_record(record, self.now)
        {
            return Ok(answer);
        }
        self.run_interpreter(expr, variable, value)
    }

    /// [`Evaluator::evaluate`] by the interpreter alone, never the fast path.
    pub fn interpret(&self, expr: &CompiledExpr, variable: &str, value: &CelValue) -> Result<bool, EvalError> {
        self.check_cost(expr, value)?;
        self.run_interpreter(expr, variable, value)
    }

    /// Refuses, before it runs, an evaluation whose bound exceeds the limit.
    fn check_cost(&self, expr: &CompiledExpr, value: &CelValue) -> Result<(), EvalError> {
        let cost = expr.cost(value.longest);
        if cost > self.max_cost {
            return Err(EvalError::TooCostly { cost, longest: value.longest, limit: self.max_cost });
        }
        Ok(())
    }

    fn run_interpreter(&self, expr: &CompiledExpr, variable: &str, value: &CelValue) -> Result<bool, EvalError> {
        let bindings = Bindings { name: variable, value: value.value.as_ref(), now: self.now_value.as_ref() };
        let mut scope = self.root.new_inner_scope();
        scope.set_variable_resolver(&bindings);
        match expr.program.execute(&scope) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(EvalError::NotBool(format!("{other:?}"))),
            Err(e) => Err(EvalError::Runtime(e.to_string())),
        }
    }
}

fn has_comprehension(expr: &IdedExpr) -> bool {
    let mut found = false;
    visit(expr, &mut |e| found |= matches!(e.expr, Expr::Comprehension(_)));
    found
}

fn longest_literal_list(expr: &IdedExpr) -> u64 {
    let mut longest = 0u64;
    visit(expr, &mut |e| match &e.expr {
        Expr::List(list) => longest = longest.max(list.elements.len() as u64),
        Expr::Map(map) => longest = longest.max(map.entries.len() as u64),
        _ => {}
    });
    longest
}

/// Calls `f` on every node, parents first.
fn visit(expr: &IdedExpr, f: &mut dyn FnMut(&IdedExpr)) {
    f(expr);
    match &expr.expr {
        Expr::Select(select) => visit(&select.operand, f),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                visit(target, f);
            }
            for arg in &call.args {
                visit(arg, f);
            }
        }
        Expr::Comprehension(c) => {
            for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                visit(part, f);
            }
        }
        Expr::List(list) => list.elements.iter().for_each(|e| visit(e, f)),
        Expr::Map(map) => map.entries.iter().for_each(|entry| visit_entry(&entry.expr, f)),
        Expr::Struct(s) => s.entries.iter().for_each(|entry| visit_entry(&entry.expr, f)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn visit_entry(entry: &EntryExpr, f: &mut dyn FnMut(&IdedExpr)) {
    match entry {
        EntryExpr::MapEntry(e) => {
            visit(&e.key, f);
            visit(&e.value, f);
        }
        EntryExpr::StructField(field) => visit(&field.value, f),
    }
}

fn collect_field_use(expr: &IdedExpr, variable: &str, bound: &mut Vec<String>, usage: &mut FieldUse) {
    if *usage == FieldUse::Whole {
        return;
    }
    let free = |name: &str, bound: &[String]| name == variable && !bound.iter().any(|b| b == name);
    match &expr.expr {
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(name) if free(name, bound) => match usage {
                FieldUse::Fields(fields) => {
                    fields.insert(select.field.clone());
                }
                _ => *usage = FieldUse::Fields(BTreeSet::from([select.field.clone()])),
            },
            _ => collect_field_use(&select.operand, variable, bound, usage),
        },
        Expr::Ident(name) if free(name, bound) => *usage = FieldUse::Whole,
        Expr::Comprehension(c) => {
            collect_field_use(&c.iter_range, variable, bound, usage);
            collect_field_use(&c.accu_init, variable, bound, usage);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(second) = &c.iter_var2 {
                bound.push(second.clone());
            }
            bound.push(c.accu_var.clone());
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                collect_field_use(part, variable, bound, usage);
            }
            bound.truncate(before);
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                collect_field_use(target, variable, bound, usage);
            }
            for arg in &call.args {
                collect_field_use(arg, variable, bound, usage);
            }
        }
        Expr::List(list) => list.elements.iter().for_each(|e| collect_field_use(e, variable, bound, usage)),
        Expr::Map(map) => map.entries.iter().for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => {
                collect_field_use(&e.key, variable, bound, usage);
                collect_field_use(&e.value, variable, bound, usage);
            }
            EntryExpr::StructField(field) => collect_field_use(&field.value, variable, bound, usage),
        }),
        Expr::Struct(s) => s.entries.iter().for_each(|entry| {
            if let EntryExpr::StructField(field) = &entry.expr {
                collect_field_use(&field.value, variable, bound, usage);
            }
        }),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The longest list or object anywhere in `json`.
fn longest_collection(json: &serde_json::Value) -> u64 {
    match json {
        serde_json::Value::Array(items) => items.iter().map(longest_collection).fold(items.len() as u64, u64::max),
        serde_json::Value::Object(map) => map.values().map(longest_collection).fold(map.len() as u64, u64::max),
        _ => 0,
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

    fn patch() -> CelValue {
        CelValue::from_json(
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
        Evaluator::new(&env, "2026-11-24T12:00:00Z".parse().unwrap()).evaluate(&expr, "patch", &patch())
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

    fn field_use(source: &str, variable: &str) -> FieldUse {
        CompiledExpr::compile(&environment(), source).unwrap().field_use(variable)
    }

    #[test]
    fn field_use_names_the_fields_read() {
        let fields = |names: &[&str]| FieldUse::Fields(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            field_use(r#"patch.severity == "high" && patch.category == "security""#, "patch"),
            fields(&["category", "severity"])
        );
        assert_eq!(
            field_use(r#""ring" in device.labels && device.labels["ring"] == "pilot""#, "device"),
            fields(&["labels"])
        );
        assert_eq!(field_use("patch.cves.exists(c, c.startsWith(patch.id))", "patch"), fields(&["cves", "id"]));
        assert_eq!(
            field_use("patch.cves.exists(patch, patch == 'x')", "patch"),
            fields(&["cves"]),
            "a shadowing loop variable is not the patch"
        );
        assert_eq!(field_use(r#"patch["severity"] == "high""#, "patch"), FieldUse::Whole);
        assert_eq!(field_use("has(device.os)", "device"), fields(&["os"]));
        assert_eq!(field_use("now > timestamp('2026-01-01T00:00:00Z')", "patch"), FieldUse::Unused);
    }

    #[test]
    fn evaluation_cost_counts_the_real_list_lengths() {
        let env = environment();
        let evaluator = Evaluator::new(&env, "2026-11-24T12:00:00Z".parse().unwrap()).with_max_cost(10_000);
        let nested = CompiledExpr::compile(&env, "patch.cves.all(a, patch.cves.all(b, a != b || a == b))").unwrap();
        let few = CelValue::from_json(&serde_json::json!({"cves": ["CVE-2026-1", "CVE-2026-2"]}), &[]);
        assert_eq!(evaluator.evaluate(&nested, "patch", &few), Ok(true));
        let cves: Vec<String> = (0..1000).map(|i| format!("CVE-2026-{i:04}")).collect();
        let many = CelValue::from_json(&serde_json::json!({ "cves": cves }), &[]);
        assert!(matches!(evaluator.evaluate(&nested, "patch", &many), Err(EvalError::TooCostly { longest: 1000, .. })));
        let flat = CompiledExpr::compile(&env, r#"patch.cves.exists(c, c == "CVE-2026-0999")"#).unwrap();
        assert_eq!(evaluator.evaluate(&flat, "patch", &many), Ok(true), "one pass over 1,000 items is affordable");
    }

    mod fast_path {
        use super::*;
        use proptest::prelude::*;

        const ATOMS: &[&str] = &[
            "patch.severity",
            "patch.product",
            "patch.score",
            "patch.cvss",
            "patch.cvss.score",
            "patch.cves",
            "patch.nums",
            "patch.flag",
            "patch.missing",
            "patch.released",
            "patch.mixed",
            "patch.labels",
            "patch.obsoleteSince",
            "patch.labels[\"high\"]",
            "patch.labels[\"nope\"]",
            "patch.cves[0]",
            "\"high\"",
            "\"Java\"",
            "1",
            "2.5",
            "true",
            "null",
            "[\"a\", \"high\"]",
            "[1, 2]",
        ];

        fn atom() -> impl Strategy<Value = String> {
            prop::sample::select(ATOMS).prop_map(str::to_owned)
        }

        fn boolean() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                (atom(), atom(), prop::sample::select(&["==", "!=", "<", ">=", "in"][..]))
                    .prop_map(|(a, b, op)| format!("{a} {op} {b}")),
                (atom(), atom()).prop_map(|(a, b)| format!("{a}.startsWith({b})")),
                (atom(), atom()).prop_map(|(a, b)| format!("{a}.contains({b})")),
                atom().prop_map(|a| format!("size({a}) > 1")),
                prop::sample::select(&["severity", "missing", "cvss", "obsoleteSince"][..])
                    .prop_map(|f| format!("has(patch.{f})")),
                (atom(), atom()).prop_map(|(l, v)| format!("{l}.exists(c, c == {v})")),
                atom().prop_map(|l| format!("{l}.all(c, c.startsWith(\"C\"))")),
                atom().prop_map(|a| format!("daysSince({a}) > 3")),
                atom(),
            ];
            leaf.prop_recursive(3, 12, 2, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|e| format!("!({e})")),
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
                    (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) || ({b})")),
                ]
            })
        }

        fn patch_json() -> impl Strategy<Value = serde_json::Value> {
            (
                prop::sample::select(&["high", "low", "critical"][..]),
                any::<bool>(),
                any::<bool>(),
                0i64..4,
                prop::collection::vec(prop::sample::select(&["CVE-1", "high", "a", "C"][..]), 0..3),
                any::<bool>(),
            )
                .prop_map(|(severity, float_score, cvss, score, cves, flag)| {
                    serde_json::json!({
                        "severity": severity, "product": "Java 8",
                        "score": if float_score { serde_json::json!(score as f64 + 0.5) } else { serde_json::json!(score) },
                        "cvss": if cvss { serde_json::json!({"score": 7.5}) } else { serde_json::Value::Null },
                        "cves": cves, "nums": [1, 2, score], "flag": flag, "released": "2026-11-01T00:00:00Z",
                        "mixed": ["a", 1], "labels": {"high": "x"}, "obsoleteSince": null
                    })
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Wherever the fast path answers, the interpreter gives the same answer.
            #[test]
            fn agrees_with_the_interpreter(source in boolean(), json in patch_json()) {
                let env = environment();
                let Ok(expr) = CompiledExpr::compile(&env, &source) else { return Ok(()) };
                let evaluator = Evaluator::new(&env, "2026-11-24T12:00:00Z".parse().unwrap());
                let value = CelValue::from_json(&json, PATCH_TIMESTAMPS);
                let fast = expr.fast.iter().find(|(v, _)| *v == "patch").and_then(|(_, f)| f.evaluate(&json, PATCH_TIMESTAMPS, evaluator.now));
                if let Some(answer) = fast {
                    prop_assert_eq!(evaluator.interpret(&expr, "patch", &value), Ok(answer), "{} over {}", source, json);
                }
            }
        }

        #[test]
        fn null_and_mixed_equalities_agree() {
            let env = environment();
            let evaluator = Evaluator::new(&env, "2026-11-24T12:00:00Z".parse().unwrap());
            let json = serde_json::json!({"none": null, "map": {"a": 1}, "list": [1], "text": "x", "n": 1});
            let value = CelValue::from_json(&json, &[]);
            for source in [
                "null == null",
                "patch.none == null",
                "patch.map != null",
                "patch.list == null",
                "patch.text != null",
                "patch.n == null",
                "null != patch.map",
                "patch.none != patch.text",
            ] {
                let expr = CompiledExpr::compile(&env, source).unwrap();
                let (_, fast) = expr.fast.iter().find(|(v, _)| *v == "patch").unwrap();
                let answer = fast.evaluate(&json, &[], evaluator.now);
                assert!(answer.is_some(), "{source}");
                assert_eq!(evaluator.interpret(&expr, "patch", &value), Ok(answer.unwrap()), "{source}");
            }
        }

        #[test]
        fn covers_the_expressions_admins_write() {
            let env = environment();
            for source in [
                r#"patch.severity == "critical" && patch.category == "security""#,
                r#"patch.product.startsWith("Java")"#,
                r#"patch.vendor == "Oracle" && patch.severity in ["critical", "high"]"#,
                "patch.cvss != null && patch.cvss.score >= 7.0",
                r#"patch.cves.exists(c, c.startsWith("CVE-2026-1"))"#,
                r#"daysSince(patch.released) > 30 && patch.severity != "low""#,
                r#""ring" in device.labels && device.labels["ring"] == "pilot""#,
            ] {
                let expr = CompiledExpr::compile(&env, source).unwrap();
                let variable = if source.contains("device") { "device" } else { "patch" };
                assert!(expr.has_fast_path(variable), "{source}");
            }
            // And answers them, as the interpreter does.
            let json = serde_json::json!({
                "severity": "critical", "category": "security", "product": "Java 8", "vendor": "Oracle",
                "cvss": {"score": 9.8}, "cves": ["CVE-2026-1234"], "released": "2026-10-01T00:00:00Z",
                "labels": {"ring": "pilot"}
            });
            let evaluator = Evaluator::new(&env, "2026-11-24T12:00:00Z".parse().unwrap());
            for (source, variable) in [
                (r#"patch.vendor == "Oracle" && patch.severity in ["critical", "high"]"#, "patch"),
                (r#"patch.cves.exists(c, c.startsWith("CVE-2026-1")) && daysSince(patch.released) > 30"#, "patch"),
                (r#""ring" in device.labels && device.labels["ring"] == "pilot""#, "device"),
            ] {
                let expr = CompiledExpr::compile(&env, source).unwrap();
                let (_, fast) = expr.fast.iter().find(|(v, _)| *v == variable).unwrap();
                assert_eq!(fast.evaluate(&json, PATCH_TIMESTAMPS, evaluator.now), Some(true), "{source}");
                let value = CelValue::from_json(&json, PATCH_TIMESTAMPS);
                assert_eq!(evaluator.interpret(&expr, variable, &value), Ok(true), "{source}");
            }
        }
    }
}
