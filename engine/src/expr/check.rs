use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr, SourceInfo};

use crate::diagnostics::suggestion;

/// Which variables an expression sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExprScope {
    /// ApprovalRule `match` and Exclusion `match`: `patch` and `now`.
    Patch,
    /// Scope `selector`: `device` and `now`.
    Device,
}

impl ExprScope {
    fn variables(self) -> &'static [&'static str] {
        match self {
            ExprScope::Patch => &["patch", "now"],
            ExprScope::Device => &["device", "now"],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ExprScope::Patch => "a rule's or exclusion's `match` sees `patch` and `now`",
            ExprScope::Device => "a scope's `selector` sees `device` and `now`",
        }
    }
}

/// Fields of `patch`: every catalog field and the engine's own.
pub const PATCH_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "vendor",
    "product",
    "category",
    "severity",
    "cvss",
    "cves",
    "released",
    "supersedes",
    "applicability",
    "fixes",
    "detect",
    "packages",
    "reboot",
    "source",
    "firstSeen",
    "supersededBy",
    "obsoleteSince",
];
const CVSS_FIELDS: &[&str] = &["vector", "score", "version"];
const APPLICABILITY_FIELDS: &[&str] = &["platforms", "arch", "languages"];
/// Fields of `device`: its id and every fact.
pub const DEVICE_FIELDS: &[&str] =
    &["id", "os", "platform", "arch", "language", "hostname", "labels", "groups", "timezone", "ip"];

/// CEL's standard functions, the string, list and math extensions, and
/// patchward's helpers. The planner's environment registers exactly these.
const FUNCTIONS: &[&str] = &[
    // standard
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    // strings extension
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "format",
    // lists extension
    "distinct",
    "flatten",
    "reverse",
    "slice",
    "sort",
    "sortBy",
    // patchward
    "versionAtLeast",
    "daysSince",
];
/// The math extension's functions, written `math.name(...)`.
const MATH_FUNCTIONS: &[&str] = &[
    "greatest",
    "least",
    "abs",
    "ceil",
    "floor",
    "round",
    "sign",
    "sqrt",
    "trunc",
    "isFinite",
    "isInf",
    "isNaN",
    "bitAnd",
    "bitOr",
    "bitXor",
    "bitNot",
    "bitShiftLeft",
    "bitShiftRight",
];
const TYPE_NAMES: &[&str] = &["int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"];

/// Bounds on an expression (RELIABILITY T7).
#[derive(Clone, Copy, Debug)]
pub struct ExprLimits {
    /// Characters of source.
    pub max_length: usize,
    /// Nesting the parser accepts (parentheses, lists, calls).
    pub max_parse_depth: u16,
    /// Depth of the syntax tree.
    pub max_ast_depth: usize,
    /// Estimated evaluation cost, in the units of [`estimate_cost`].
    pub max_cost: u64,
}

impl Default for ExprLimits {
    fn default() -> Self {
        ExprLimits { max_length: 4_096, max_parse_depth: 32, max_ast_depth: 64, max_cost: 10_000 }
    }
}

/// Lists are assumed this long when a comprehension's cost is estimated,
/// the way Kubernetes bounds CEL by declared list sizes.
const ASSUMED_LIST_LENGTH: u64 = 100;
/// A regular expression match costs more than a comparison.
const REGEX_COST: u64 = 50;

/// A problem at a character offset inside the expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprProblem {
    pub offset: usize,
    pub message: String,
}

/// Checks every expression; one result per input, in order.
///
/// The CEL parser recurses, so parsing runs on a thread with a stack large
/// enough for the depth limit whatever the caller's stack is.
pub fn check_expressions(items: &[(&str, ExprScope)], limits: &ExprLimits) -> Vec<Vec<ExprProblem>> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-check".into())
            .stack_size(64 << 20)
            .spawn_scoped(scope, || items.iter().map(|(source, vars)| check_one(source, *vars, limits)).collect())
            .expect("failed to start the CEL checking thread")
            .join()
            .unwrap_or_else(|_| {
                items
                    .iter()
                    .map(|_| vec![ExprProblem { offset: 0, message: "the expression could not be checked".into() }])
                    .collect()
            })
    })
}

fn check_one(source: &str, vars: ExprScope, limits: &ExprLimits) -> Vec<ExprProblem> {
    let length = source.chars().count();
    if length > limits.max_length {
        return vec![ExprProblem {
            offset: 0,
            message: format!("expression is {length} characters long; the limit is {}", limits.max_length),
        }];
    }
    if source.trim().is_empty() {
        return vec![ExprProblem { offset: 0, message: "expression is empty".into() }];
    }
    let parser = cel::Env::stdlib().parser().max_recursion_depth(limits.max_parse_depth);
    let (ast, info) = match parser.parse_with_source_info(source) {
        Ok(parsed) => parsed,
        // ANTLR recovers and goes on, but what follows the first error is
        // mostly its echo: report the first, or the depth limit if hit.
        Err(errors) => {
            let first = errors.errors.iter().find(|e| is_recursion_error(e)).or(errors.errors.first());
            return first.map(|e| parse_problem(source, e, limits)).into_iter().collect();
        }
    };
    let chars: Vec<char> = source.chars().collect();
    let mut checker = Checker { vars, info: &info, chars: &chars, bound: Vec::new(), problems: Vec::new(), limits };
    checker.walk(&ast, 1);
    let cost = estimate_cost(&ast.expr);
    if cost > limits.max_cost {
        checker.problems.push(ExprProblem {
            offset: 0,
            message: format!(
                "expression is too costly: estimated cost {cost}, the limit is {} (each comprehension over a list counts {ASSUMED_LIST_LENGTH} iterations)",
                limits.max_cost
            ),
        });
    }
    checker.problems.sort_by_key(|p| p.offset);
    checker.problems.dedup();
    checker.problems
}

fn is_recursion_error(error: &cel::ParseError) -> bool {
    error.msg.to_lowercase().contains("recursion")
}

fn parse_problem(source: &str, error: &cel::ParseError, limits: &ExprLimits) -> ExprProblem {
    if is_recursion_error(error) {
        return ExprProblem {
            offset: 0,
            message: format!("expression nests deeper than {} levels", limits.max_parse_depth),
        };
    }
    let (line, col) = error.pos;
    let offset = if line >= 1 && col >= 1 { offset_of_line_col(source, line as usize, col as usize) } else { 0 };
    // An error at the end points just after the last character, not past a
    // trailing newline of a block scalar.
    let offset = offset.min(source.trim_end().chars().count());
    ExprProblem { offset, message: format!("invalid CEL: {}", plain_syntax_message(&error.msg)) }
}

/// ANTLR's messages, said the way a reviewer reads them.
fn plain_syntax_message(raw: &str) -> String {
    let message = raw.strip_prefix("Syntax error: ").unwrap_or(raw);
    let token = |rest: &str| rest.split('\'').nth(1).unwrap_or_default().to_owned();
    if let Some(rest) = message.strip_prefix("mismatched input ").or(message.strip_prefix("extraneous input ")) {
        let found = token(rest);
        return if found == "<EOF>" { "the expression ends too early".into() } else { format!("unexpected `{found}`") };
    }
    if let Some(rest) = message.strip_prefix("missing ") {
        let wanted = token(rest);
        let at = rest.split(" at ").nth(1).map(|t| t.trim_matches('\'')).unwrap_or_default();
        return if at == "<EOF>" {
            format!("missing `{wanted}` at the end")
        } else {
            format!("missing `{wanted}` before `{at}`")
        };
    }
    if let Some(rest) = message.strip_prefix("token recognition error at: ") {
        let found = rest.trim_matches('\'').trim();
        return format!("unexpected character `{found}`");
    }
    if let Some(rest) = message.strip_prefix("no viable alternative at input ") {
        return format!("cannot read `{}`", rest.trim_matches('\''));
    }
    message.to_owned()
}

/// The character offset of a 1-based line and column.
fn offset_of_line_col(source: &str, line: usize, col: usize) -> usize {
    let before: usize = source.split('\n').take(line - 1).map(|l| l.chars().count() + 1).sum();
    (before + col - 1).min(source.chars().count())
}

struct Checker<'a> {
    vars: ExprScope,
    info: &'a SourceInfo,
    chars: &'a [char],
    /// Names bound by enclosing comprehensions.
    bound: Vec<String>,
    problems: Vec<ExprProblem>,
    limits: &'a ExprLimits,
}

impl Checker<'_> {
    fn offset(&self, expr: &IdedExpr) -> usize {
        self.info.offset_for(expr.id).map(|(start, _)| start as usize).unwrap_or(0)
    }

    fn problem(&mut self, expr: &IdedExpr, message: String) {
        let offset = self.offset(expr);
        self.problems.push(ExprProblem { offset, message });
    }

    /// The parser places a selection at its `.` and a call at its `(`;
    /// a reader looks for the name, so point there.
    fn problem_at_name(&mut self, expr: &IdedExpr, name: &str, message: String) {
        let offset = self.offset(expr);
        let offset = match self.chars.get(offset) {
            Some('.') => offset + 1,
            Some('(') => offset.saturating_sub(name.chars().count()),
            _ => offset,
        };
        self.problems.push(ExprProblem { offset, message });
    }

    /// `math` in `math.greatest(...)`: the extension's namespace, unless a
    /// comprehension bound the name.
    fn is_math_namespace(&self, target: &IdedExpr) -> bool {
        matches!(&target.expr, Expr::Ident(name) if name == "math" && !self.is_bound(name))
    }

    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    fn walk(&mut self, expr: &IdedExpr, depth: usize) {
        if depth > self.limits.max_ast_depth {
            self.problem(expr, format!("expression nests deeper than {} levels", self.limits.max_ast_depth));
            return;
        }
        match &expr.expr {
            Expr::Ident(name) => self.check_ident(expr, name),
            Expr::Select(select) => {
                self.check_field(expr, &select.operand, &select.field);
                self.walk(&select.operand, depth + 1);
            }
            Expr::Call(call) if call.target.as_deref().is_some_and(|t| self.is_math_namespace(t)) => {
                if !MATH_FUNCTIONS.contains(&call.func_name.as_str()) {
                    let hint = suggestion(&call.func_name, MATH_FUNCTIONS.iter().copied());
                    self.problem_at_name(
                        expr,
                        &call.func_name,
                        format!("unknown function `math.{}`{hint}", call.func_name),
                    );
                }
                for arg in &call.args {
                    self.walk(arg, depth + 1);
                }
            }
            Expr::Call(call) => {
                self.check_function(expr, &call.func_name);
                if let Some(target) = &call.target {
                    self.walk(target, depth + 1);
                }
                for arg in &call.args {
                    self.walk(arg, depth + 1);
                }
            }
            Expr::Comprehension(comprehension) => self.walk_comprehension(comprehension, depth),
            Expr::List(list) => {
                for element in &list.elements {
                    self.walk(element, depth + 1);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.walk_entry(&entry.expr, depth);
                }
            }
            Expr::Struct(structure) => {
                self.problem(expr, format!("message construction `{}{{...}}` is not supported", structure.type_name));
                for entry in &structure.entries {
                    self.walk_entry(&entry.expr, depth);
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn walk_entry(&mut self, entry: &EntryExpr, depth: usize) {
        match entry {
            EntryExpr::MapEntry(e) => {
                self.walk(&e.key, depth + 1);
                self.walk(&e.value, depth + 1);
            }
            EntryExpr::StructField(f) => self.walk(&f.value, depth + 1),
        }
    }

    fn walk_comprehension(&mut self, c: &ComprehensionExpr, depth: usize) {
        self.walk(&c.iter_range, depth + 1);
        self.walk(&c.accu_init, depth + 1);
        let before = self.bound.len();
        self.bound.push(c.iter_var.clone());
        if let Some(second) = &c.iter_var2 {
            self.bound.push(second.clone());
        }
        self.bound.push(c.accu_var.clone());
        self.walk(&c.loop_cond, depth + 1);
        self.walk(&c.loop_step, depth + 1);
        self.bound.truncate(before);
        self.bound.push(c.accu_var.clone());
        self.walk(&c.result, depth + 1);
        self.bound.truncate(before);
    }

    fn check_ident(&mut self, expr: &IdedExpr, name: &str) {
        if self.is_bound(name) || self.vars.variables().contains(&name) || TYPE_NAMES.contains(&name) {
            return;
        }
        let known = self.vars.variables().iter().copied().chain(self.bound.iter().map(String::as_str));
        let hint = suggestion(name, known.collect::<Vec<_>>());
        let misplaced = ["patch", "device"].contains(&name);
        let message = if misplaced {
            format!("`{name}` is not available here: {}", self.vars.describe())
        } else {
            format!("unknown variable `{name}`{hint}; {}", self.vars.describe())
        };
        self.problem(expr, message);
    }

    /// `patch.x`, `patch.cvss.x`, `patch.applicability.x` and `device.x`
    /// name fields DESIGN.md defines; anything else is a typo.
    fn check_field(&mut self, expr: &IdedExpr, operand: &IdedExpr, field: &str) {
        let (owner, fields): (String, &[&str]) = match &operand.expr {
            Expr::Ident(root) if !self.is_bound(root) => match root.as_str() {
                "patch" if self.vars == ExprScope::Patch => ("patch".into(), PATCH_FIELDS),
                "device" if self.vars == ExprScope::Device => ("device".into(), DEVICE_FIELDS),
                _ => return,
            },
            Expr::Select(parent) => match (&parent.operand.expr, parent.field.as_str()) {
                (Expr::Ident(root), "cvss") if root == "patch" && !self.is_bound(root) => {
                    ("patch.cvss".into(), CVSS_FIELDS)
                }
                (Expr::Ident(root), "applicability") if root == "patch" && !self.is_bound(root) => {
                    ("patch.applicability".into(), APPLICABILITY_FIELDS)
                }
                _ => return,
            },
            _ => return,
        };
        if !fields.contains(&field) {
            let hint = suggestion(field, fields.iter().copied());
            let list = if hint.is_empty() { format!("; it has {}", fields.join(", ")) } else { String::new() };
            self.problem_at_name(expr, field, format!("`{owner}` has no field `{field}`{hint}{list}"));
        }
    }

    fn check_function(&mut self, expr: &IdedExpr, name: &str) {
        // Operators (`_==_`, `@in`, `!_`) are the parser's own.
        if name.starts_with(['_', '@', '!']) || FUNCTIONS.contains(&name) {
            return;
        }
        let hint = suggestion(name, FUNCTIONS.iter().copied());
        self.problem_at_name(expr, name, format!("unknown function `{name}`{hint}"));
    }
}

/// A static upper bound on the work an evaluation does: one unit per node,
/// a comprehension's body times [`ASSUMED_LIST_LENGTH`], regexes extra.
pub fn estimate_cost(expr: &Expr) -> u64 {
    estimate_cost_with(expr, ASSUMED_LIST_LENGTH)
}

/// [`estimate_cost`] with every comprehension iterating `list_length`
/// times: with the longest list of the bound values, a bound on one
/// evaluation's work that holds before it runs.
pub fn estimate_cost_with(expr: &Expr, list_length: u64) -> u64 {
    let cost = |e: &Expr| estimate_cost_with(e, list_length);
    let sum = |exprs: &mut dyn Iterator<Item = &IdedExpr>| exprs.fold(0u64, |acc, e| acc.saturating_add(cost(&e.expr)));
    let entry_cost = |entry: &EntryExpr| match entry {
        EntryExpr::MapEntry(e) => cost(&e.key.expr).saturating_add(cost(&e.value.expr)),
        EntryExpr::StructField(f) => cost(&f.value.expr),
    };
    match expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => 1,
        Expr::Select(s) => 1 + cost(&s.operand.expr),
        Expr::Call(call) => {
            let own = if call.func_name == "matches" { REGEX_COST } else { 1 };
            own.saturating_add(sum(&mut call.target.iter().map(|t| &**t))).saturating_add(sum(&mut call.args.iter()))
        }
        Expr::List(list) => 1 + sum(&mut list.elements.iter()),
        Expr::Map(map) => 1 + map.entries.iter().map(|e| entry_cost(&e.expr)).fold(0, u64::saturating_add),
        Expr::Struct(s) => 1 + s.entries.iter().map(|e| entry_cost(&e.expr)).fold(0, u64::saturating_add),
        Expr::Comprehension(c) => {
            let body = cost(&c.loop_cond.expr).saturating_add(cost(&c.loop_step.expr));
            cost(&c.iter_range.expr)
                .saturating_add(cost(&c.accu_init.expr))
                .saturating_add(body.saturating_mul(list_length.max(1)))
                .saturating_add(cost(&c.result.expr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, scope: ExprScope) -> Vec<ExprProblem> {
        check_expressions(&[(source, scope)], &ExprLimits::default()).remove(0)
    }

    #[test]
    fn accepts_the_expressions_design_shows() {
        for (source, scope) in [
            (r#"patch.severity == "critical" && patch.category == "security""#, ExprScope::Patch),
            (r#"patch.product.startsWith("Java")"#, ExprScope::Patch),
            (r#"device.labels["ring"] == "pilot""#, ExprScope::Device),
            (r#""ring" in device.labels && device.labels["ring"] == "canary""#, ExprScope::Device),
            (
                r#"patch.cves.exists(c, c.startsWith("CVE-2026")) && has(patch.cvss) && patch.cvss.score >= 7.0"#,
                ExprScope::Patch,
            ),
            (r#"daysSince(patch.released) > 7 && now > timestamp("2026-01-01T00:00:00Z")"#, ExprScope::Patch),
        ] {
            assert_eq!(check(source, scope), vec![], "{source}");
        }
    }

    #[test]
    fn names_unknown_variables_fields_and_functions_where_they_are() {
        let problems = check(r#"patch.severty == "critical""#, ExprScope::Patch);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].offset, 6, "{problems:?}");
        assert!(problems[0].message.contains("did you mean `severity`"), "{problems:?}");

        let problems = check(r#"device.os == "linux""#, ExprScope::Patch);
        assert!(problems[0].message.contains("`device` is not available here"), "{problems:?}");

        let problems = check(r#"patch.title.startWith("x")"#, ExprScope::Patch);
        assert!(problems[0].message.contains("did you mean `startsWith`"), "{problems:?}");

        let problems = check("patch.cvss.scroe > 7.0", ExprScope::Patch);
        assert!(problems[0].message.contains("did you mean `score`"), "{problems:?}");
    }

    #[test]
    fn functions_the_evaluator_lacks_are_refused() {
        // `max`/`min` are not CEL standard functions here; `math.greatest` is.
        let problems = check("max(patch.cvss.score, 1.0) > 5.0", ExprScope::Patch);
        assert!(problems[0].message.contains("unknown function `max`"), "{problems:?}");
        assert_eq!(check("math.greatest(patch.cvss.score, 1.0) > 5.0", ExprScope::Patch), vec![]);
    }

    #[test]
    fn comprehension_variables_are_in_scope_only_inside() {
        assert_eq!(check("patch.cves.all(c, c != '')", ExprScope::Patch), vec![]);
        let problems = check("patch.cves.all(c, c != '') && c == ''", ExprScope::Patch);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn syntax_errors_point_into_the_expression() {
        let problems = check(r#"patch.severity == "#, ExprScope::Patch);
        assert_eq!(problems[0].offset, 17);
        assert!(problems[0].message.starts_with("invalid CEL"));
    }

    #[test]
    fn depth_and_cost_bombs_are_refused() {
        let deep = format!("{}1{} == 1", "(".repeat(1_000), ")".repeat(1_000));
        assert!(check(&deep, ExprScope::Patch)[0].message.contains("nests deeper"));
        let costly = "patch.cves.all(a, patch.cves.all(b, patch.cves.all(c, a + b + c != '')))";
        assert!(check(costly, ExprScope::Patch)[0].message.contains("too costly"));
        let long = format!("patch.id == '{}'", "x".repeat(5_000));
        assert!(check(&long, ExprScope::Patch)[0].message.contains("characters long"));
    }
}
