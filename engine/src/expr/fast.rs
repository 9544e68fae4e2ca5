//! A fast path for the expressions admins write most: comparisons of
//! fields with literals, `&&`, `||`, `!`, `in`, string tests, `size`,
//! `exists`/`all` over a list, and `daysSince`. It evaluates straight over
//! the JSON of a patch or device, with no interpreter in between.
//!
//! It never decides anything the `cel` crate would decide differently: it
//! answers only when every step is well-typed and unsurprising, and
//! otherwise gives up (`None`), so the interpreter runs and its answer (or
//! error, with its message) stands. A differential test checks the two
//! agree wherever the fast path answers.

use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value as Json;

/// A compiled fast-path expression.
#[derive(Debug)]
pub struct FastExpr {
    root: Node,
}

#[derive(Debug)]
enum Node {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Null,
    /// The bound variable (`patch`, `device`).
    Root,
    /// A comprehension's variable, by depth.
    Local(usize),
    Select {
        operand: Box<Node>,
        field: String,
        test: bool,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Compare(Op, Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    StartsWith(Box<Node>, Box<Node>),
    EndsWith(Box<Node>, Box<Node>),
    Contains(Box<Node>, Box<Node>),
    Size(Box<Node>),
    DaysSince(Box<Node>),
    Exists {
        range: Box<Node>,
        body: Box<Node>,
    },
    All {
        range: Box<Node>,
        body: Box<Node>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A value during evaluation. `Time` is a top-level timestamp field (CEL
/// sees a timestamp there, the JSON a string): only `daysSince` takes it.
#[derive(Clone, Copy, Debug)]
enum Val<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Null,
    List(&'a [Json]),
    Object(&'a serde_json::Map<String, Json>),
    Literals(&'a [Node]),
    StrList(&'a [String]),
    Time(jiff::Timestamp),
}

/// A top-level field of the bound value, as a [`Record`] gives it.
pub enum FieldValue<'a> {
    Str(&'a str),
    StrList(&'a [String]),
    /// A field CEL sees as a timestamp.
    Time(jiff::Timestamp),
    Json(&'a Json),
    /// A map of strings (a device's labels), read as keys only: an
    /// expression that reads it is evaluated over the device's JSON.
    StrMap(&'a patchward_api::Labels),
}

/// Where the fast path reads the bound variable's fields. The planner
/// gives patches as their typed records, whose fields sit in a few cache
/// lines, rather than as JSON trees, whose lookups chase pointers.
pub trait Record {
    /// The field, or `None` when the value has no such field.
    fn field(&self, name: &str) -> Option<FieldValue<'_>>;
    /// The whole value as JSON, for an expression that reads it whole.
    fn whole(&self) -> Option<&Json> {
        None
    }
}

/// A JSON value as a [`Record`]: strings in `timestamps` (top level) are
/// timestamps, as `eval::from_json` makes them.
pub struct JsonRecord<'a> {
    pub json: &'a Json,
    pub timestamps: &'a [&'a str],
}

impl<'a> JsonRecord<'a> {
    /// A top-level field of the JSON.
    pub fn get(&self, name: &str) -> Option<FieldValue<'a>> {
        let value = self.json.as_object()?.get(name)?;
        if let Json::String(text) = value
            && self.timestamps.contains(&name)
            && let Ok(t) = text.parse::<jiff::Timestamp>()
        {
            return Some(FieldValue::Time(t));
        }
        Some(FieldValue::Json(value))
    }
}

impl Record for JsonRecord<'_> {
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        self.get(name)
    }

    fn whole(&self) -> Option<&Json> {
        Some(self.json)
    }
}

struct Compiler<'a> {
    variable: &'a str,
    locals: Vec<String>,
}

impl Compiler<'_> {
    fn node(&mut self, expr: &IdedExpr) -> Option<Node> {
        Some(match &expr.expr {
            Expr::Literal(literal) => match literal {
                LiteralValue::Boolean(b) => Node::Bool(**b),
                LiteralValue::Int(i) => Node::Int(**i),
                LiteralValue::Double(d) => Node::Float(**d),
                LiteralValue::String(s) => Node::Str(s.inner().to_owned()),
                LiteralValue::Null => Node::Null,
                _ => return None,
            },
            Expr::Ident(name) => match self.locals.iter().rposition(|l| l == name) {
                Some(depth) => Node::Local(depth),
                None if name == self.variable => Node::Root,
                None => return None,
            },
            Expr::Select(select) => {
                let operand = self.node(&select.operand)?;
                Node::Select { operand: Box::new(operand), field: select.field.clone(), test: select.test }
            }
            Expr::List(list) => Node::List(list.elements.iter().map(|e| self.node(e)).collect::<Option<_>>()?),
            Expr::Call(call) => {
                let mut args: Vec<Node> = call.args.iter().map(|a| self.node(a)).collect::<Option<_>>()?;
                let target = match &call.target {
                    Some(t) => Some(self.node(t)?),
                    None => None,
                };
                let two = |args: &mut Vec<Node>| {
                    let b = args.pop()?;
                    let a = args.pop()?;
                    Some((Box::new(a), Box::new(b)))
                };
                match (call.func_name.as_str(), target, args.len()) {
                    ("_&&_", None, 2) => two(&mut args).map(|(a, b)| Node::And(a, b))?,
                    ("_||_", None, 2) => two(&mut args).map(|(a, b)| Node::Or(a, b))?,
                    ("!_", None, 1) => Node::Not(Box::new(args.pop()?)),
                    ("@in", None, 2) => two(&mut args).map(|(a, b)| Node::In(a, b))?,
                    ("_[_]", None, 2) => two(&mut args).map(|(a, b)| Node::Index(a, b))?,
                    (name, None, 2) => {
                        let op = match name {
                            "_==_" => Op::Eq,
                            "_!=_" => Op::Ne,
                            "_<_" => Op::Lt,
                            "_<=_" => Op::Le,
                            "_>_" => Op::Gt,
                            "_>=_" => Op::Ge,
                            _ => return None,
                        };
                        two(&mut args).map(|(a, b)| Node::Compare(op, a, b))?
                    }
                    ("startsWith", Some(t), 1) => Node::StartsWith(Box::new(t), Box::new(args.pop()?)),
                    ("endsWith", Some(t), 1) => Node::EndsWith(Box::new(t), Box::new(args.pop()?)),
                    ("contains", Some(t), 1) => Node::Contains(Box::new(t), Box::new(args.pop()?)),
                    ("size", Some(t), 0) => Node::Size(Box::new(t)),
                    ("size", None, 1) => Node::Size(Box::new(args.pop()?)),
                    ("daysSince", None, 1) => Node::DaysSince(Box::new(args.pop()?)),
                    _ => return None,
                }
            }
            Expr::Comprehension(c) => self.comprehension(c)?,
            _ => return None,
        })
    }

    /// `exists` and `all` as the parser expands them: an accumulator
    /// starting false (true), stepped with `||` (`&&`), returned as is.
    fn comprehension(&mut self, c: &ComprehensionExpr) -> Option<Node> {
        if c.iter_var2.is_some() {
            return None;
        }
        let initial = match &c.accu_init.expr {
            Expr::Literal(LiteralValue::Boolean(b)) => **b,
            _ => return None,
        };
        if !matches!(&c.result.expr, Expr::Ident(name) if *name == c.accu_var) {
            return None;
        }
        let Expr::Call(step) = &c.loop_step.expr else { return None };
        let expected = if initial { "_&&_" } else { "_||_" };
        if step.func_name != expected || step.target.is_some() || step.args.len() != 2 {
            return None;
        }
        if !matches!(&step.args[0].expr, Expr::Ident(name) if *name == c.accu_var) {
            return None;
        }
        let range = self.node(&c.iter_range)?;
        self.locals.push(c.iter_var.clone());
        let body = self.node(&step.args[1]);
        self.locals.pop();
        let (range, body) = (Box::new(range), Box::new(body?));
        Some(if initial { Node::All { range, body } } else { Node::Exists { range, body } })
    }
}

impl FastExpr {
    /// The fast form of `expr` over `variable`, when every part of it has
    /// one.
    pub fn compile(expr: &IdedExpr, variable: &str) -> Option<FastExpr> {
        Compiler { variable, locals: Vec::new() }.node(expr).map(|root| FastExpr { root })
    }

    /// The answer over a JSON value, or `None` when the interpreter must
    /// decide.
    #[cfg(test)]
    pub fn evaluate(&self, value: &Json, timestamps: &[&str], now: jiff::Timestamp) -> Option<bool> {
        self.evaluate_record(&JsonRecord { json: value, timestamps }, now)
    }

    /// The answer over a record, or `None` when the interpreter must decide.
    pub fn evaluate_record(&self, record: &dyn Record, now: jiff::Timestamp) -> Option<bool> {
        let context = Context { record, now };
        match context.eval(&self.root, &mut Vec::new())? {
            Val::Bool(b) => Some(b),
            _ => None,
        }
    }
}

struct Context<'a> {
    record: &'a dyn Record,
    now: jiff::Timestamp,
}

fn from_json(json: &Json) -> Option<Val<'_>> {
    Some(match json {
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64()?),
        },
        Json::String(s) => Val::Str(s),
        Json::Null => Val::Null,
        Json::Array(items) => Val::List(items),
        Json::Object(map) => Val::Object(map),
    })
}

/// Equality where CEL's answer is beyond doubt: the same kind, or null
/// against anything. Other mixes (1 == 1.0, "1" == 1) go to the interpreter.
fn equal(a: Val, b: Val) -> Option<bool> {
    Some(match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Float(x), Val::Float(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Null, Val::Null) => true,
        (
            Val::Null,
            Val::List(_) | Val::StrList(_) | Val::Object(_) | Val::Bool(_) | Val::Int(_) | Val::Float(_) | Val::Str(_),
        ) => false,
        (
            Val::List(_) | Val::StrList(_) | Val::Object(_) | Val::Bool(_) | Val::Int(_) | Val::Float(_) | Val::Str(_),
            Val::Null,
        ) => false,
        _ => return None,
    })
}

fn order(a: Val, b: Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(&y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl<'a> Context<'a> {
    fn eval(&self, node: &'a Node, locals: &mut Vec<Val<'a>>) -> Option<Val<'a>> {
        Some(match node {
            Node::Bool(b) => Val::Bool(*b),
            Node::Int(i) => Val::Int(*i),
            Node::Float(f) => Val::Float(*f),
            Node::Str(s) => Val::Str(s),
            Node::Null => Val::Null,
            Node::Root => from_json(self.record.whole()?)?,
            Node::Local(depth) => *locals.get(*depth)?,
            Node::List(items) => Val::Literals(items),
            Node::Select { operand, field, test } if matches!(**operand, Node::Root) => {
                let value = self.record.field(field);
                if *test {
                    Val::Bool(value.is_some())
                } else {
                    match value? {
                        FieldValue::Str(s) => Val::Str(s),
                        FieldValue::StrList(list) => Val::StrList(list),
                        FieldValue::Time(t) => Val::Time(t),
                        FieldValue::Json(json) => from_json(json)?,
                        FieldValue::StrMap(_) => return None,
                    }
                }
            }
            Node::Select { operand, field, test } => {
                let Val::Object(map) = self.eval(operand, locals)? else { return None };
                if *test { Val::Bool(map.contains_key(field.as_str())) } else { from_json(map.get(field.as_str())?)? }
            }
            Node::And(a, b) => match (self.eval(a, locals)?, self.eval(b, locals)?) {
                (Val::Bool(x), Val::Bool(y)) => Val::Bool(x && y),
                _ => return None,
            },
            Node::Or(a, b) => match (self.eval(a, locals)?, self.eval(b, locals)?) {
                (Val::Bool(x), Val::Bool(y)) => Val::Bool(x || y),
                _ => return None,
            },
            Node::Not(a) => match self.eval(a, locals)? {
                Val::Bool(x) => Val::Bool(!x),
                _ => return None,
            },
            Node::Compare(op, a, b) => {
                let (x, y) = (self.eval(a, locals)?, self.eval(b, locals)?);
                Val::Bool(match op {
                    Op::Eq => equal(x, y)?,
                    Op::Ne => !equal(x, y)?,
                    Op::Lt => order(x, y)?.is_lt(),
                    Op::Le => order(x, y)?.is_le(),
                    Op::Gt => order(x, y)?.is_gt(),
                    Op::Ge => order(x, y)?.is_ge(),
                })
            }
            Node::In(needle, haystack) => {
                let needle = self.eval(needle, locals)?;
                if !matches!(needle, Val::Str(_) | Val::Int(_) | Val::Bool(_)) {
                    return None;
                }
                // Every element must be of the needle's own kind.
                let same = |v: Val| -> Option<bool> {
                    match (needle, v) {
                        (Val::Str(_), Val::Str(_)) | (Val::Int(_), Val::Int(_)) | (Val::Bool(_), Val::Bool(_)) => {
                            equal(needle, v)
                        }
                        _ => None,
                    }
                };
                let mut found = false;
                match self.eval(haystack, locals)? {
                    Val::List(items) => {
                        for item in items {
                            found |= same(from_json(item)?)?;
                        }
                    }
                    Val::StrList(items) => {
                        for item in items {
                            found |= same(Val::Str(item))?;
                        }
                    }
                    Val::Literals(items) => {
                        for item in items {
                            found |= same(self.eval(item, locals)?)?;
                        }
                    }
                    Val::Object(map) => match needle {
                        Val::Str(key) => found = map.contains_key(key),
                        _ => return None,
                    },
                    _ => return None,
                }
                Val::Bool(found)
            }
            Node::Index(container, key) => match (self.eval(container, locals)?, self.eval(key, locals)?) {
                (Val::Object(map), Val::Str(key)) => from_json(map.get(key)?)?,
                (Val::List(items), Val::Int(index)) => from_json(items.get(usize::try_from(index).ok()?)?)?,
                (Val::StrList(items), Val::Int(index)) => Val::Str(items.get(usize::try_from(index).ok()?)?),
                _ => return None,
            },
            Node::StartsWith(t, a) | Node::EndsWith(t, a) | Node::Contains(t, a) => {
                let (Val::Str(text), Val::Str(part)) = (self.eval(t, locals)?, self.eval(a, locals)?) else {
                    return None;
                };
                Val::Bool(match node {
                    Node::StartsWith(..) => text.starts_with(part),
                    Node::EndsWith(..) => text.ends_with(part),
                    _ => text.contains(part),
                })
            }
            Node::Size(a) => match self.eval(a, locals)? {
                Val::Str(s) => Val::Int(s.chars().count() as i64),
                Val::List(items) => Val::Int(items.len() as i64),
                Val::StrList(items) => Val::Int(items.len() as i64),
                Val::Object(map) => Val::Int(map.len() as i64),
                _ => return None,
            },
            Node::DaysSince(a) => match self.eval(a, locals)? {
                Val::Time(since) => Val::Int((self.now.as_second() - since.as_second()).div_euclid(86_400)),
                Val::Str(text) => {
                    let since: jiff::Timestamp = text.parse().ok()?;
                    Val::Int((self.now.as_second() - since.as_second()).div_euclid(86_400))
                }
                _ => return None,
            },
            Node::Exists { range, body } | Node::All { range, body } => {
                let items: Vec<Val> = match self.eval(range, locals)? {
                    Val::List(items) => items.iter().map(from_json).collect::<Option<_>>()?,
                    Val::StrList(items) => items.iter().map(|s| Val::Str(s)).collect(),
                    _ => return None,
                };
                let exists = matches!(node, Node::Exists { .. });
                let mut answer = !exists;
                for item in items {
                    locals.push(item);
                    let result = self.eval(body, locals);
                    locals.pop();
                    match result? {
                        Val::Bool(b) if exists => answer |= b,
                        Val::Bool(b) => answer &= b,
                        _ => return None,
                    }
                }
                Val::Bool(answer)
            }
        })
    }
}
