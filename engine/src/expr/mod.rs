//! CEL expressions: what rules, exclusions and scope selectors may say.
//!
//! Today this holds the static checks `validate` runs (syntax, references,
//! cost and depth). The `cel` crate has no type checker, so references to
//! variables, fields and functions are checked here against the variables
//! DESIGN.md gives each kind of expression.

mod check;
pub mod eval;
mod fast;

pub use check::{ExprLimits, ExprProblem, ExprScope, check_expressions, estimate_cost_with};
