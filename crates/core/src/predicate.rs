//! A schedule rule's `predicate`, parsed once and applied on both paths: the nightly batch
//! puts [`Predicate::to_sql`] into its query and the worker runs [`Predicate::matches`] on
//! row images, so the two agree on which rows schedule executions. Anything outside the subset
//! below is rejected when the config is read, never guessed at: a predicate that parses here
//! means the same thing in both places.
//!
//! # Supported predicates
//!
//! A predicate is a condition on the rule's table in a subset of MySQL's `WHERE` syntax.
//! Conditions: `column = value` with `=`, `<>` (or `!=`), `<`, `<=`, `>`, `>=`, the value on
//! either side, or another column in its place; `column IN (v1, v2, ...)` and `column NOT IN
//! (...)`; `column IS NULL` and `column IS NOT NULL`; `TRUE` and `FALSE`. Combine them with
//! `AND`, `OR`, `NOT` and parentheses (a comparison binds tighter than `NOT`, so `NOT a = 1` is
//! `NOT (a = 1)`; `NOT` tighter than `AND`, `AND` tighter than `OR`; keywords in any case).
//! Values: strings in single quotes (`''` for a quote inside; backslash escapes such as `\'`,
//! `\\`, `\n`, `\t`, `\0` as MySQL's default `sql_mode` reads them), integers and decimals with
//! an optional leading `-` (`42`, `-3`, `12.50`), `TRUE`/`FALSE` (1 and 0) and `NULL` (`col =
//! NULL` is never true, as in SQL; write `col IS NULL`). Column names are bare (`status`:
//! letters, digits, `_`, `$`, not starting with a digit, not a keyword such as `AND`, `NULL` or
//! `LIKE`) or in backticks (`` `order date` ``, ```` `` ```` for a backtick). Everything else
//! is rejected with a message naming the part and where it is: functions, `LIKE`, `BETWEEN`,
//! `REGEXP`, arithmetic, `&&`/`||`, subqueries, comments, variables, double-quoted strings,
//! exponent and hex numbers, `;`.
//!
//! # How the worker judges a row image
//!
//! A row counts only when the predicate is TRUE: a comparison with NULL is unknown, and so is
//! one with a column the image lacks ([`Predicate::missing_columns`] lets the caller treat that
//! as a config error instead). Strings compare by the column's [`Collation`]: case-insensitive
//! (MySQL's and MariaDB's default collations) ignores trailing spaces, case and accents
//! (`'Élan ' = 'elan'`); binary compares exactly. Numbers compare exactly as decimals; a string
//! compared with a number is read as MySQL reads it (its leading number, else 0). Two strings
//! that are both dates or date-times (`2026-06-10`, `2026-06-10 08:00:00`, the reader's
//! `2026-06-10T08:00:00[Z]`) compare as points in time, as MySQL compares a date column with a
//! date string.
//!
//! Where the worker can differ from MySQL, because an image carries values, not column types:
//! DECIMAL columns arrive as strings, so compare them with unquoted numbers (`amount > 10`, not
//! `'10'`); TIMESTAMP values arrive in UTC, so date literals compared with them count as UTC
//! (MySQL reads them in the session's zone); BINARY and BLOB columns arrive as base64 and SET
//! columns as arrays (compared as JSON text), so leave them out of predicates; FLOAT values
//! compare by their shortest decimal text where MySQL compares the binary float; strings
//! compared with numbers compare exactly where MySQL rounds both to doubles; MySQL 8's `_0900_`
//! collations do not ignore trailing spaces.

mod eval;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

use serde_json::{Map, Value};

use eval::{evaluate, lookup};
use lex::{tokenize, Fault, FaultKind};
use parse::Parser;

/// The tail of every "not supported" message, so the reader learns the whole subset at once.
const SUPPORTED: &str = "sameday evaluates predicates itself and supports comparisons (= <> != < <= > >=), IN, \
    IS [NOT] NULL, AND, OR, NOT, parentheses, string and number literals and column names";

/// Why a predicate was refused; each message quotes the predicate and names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredicateError {
    #[error(
        "predicate is empty; write a condition such as status = 'pending', or leave predicate out to select every row"
    )]
    Empty,
    /// Valid MySQL, perhaps, but outside what sameday evaluates.
    #[error("predicate {text:?}: {part} at character {at} is not supported; {SUPPORTED}")]
    Unsupported { text: String, part: String, at: usize },
    /// Not a well-formed predicate in any dialect.
    #[error("predicate {text:?}: {problem} at character {at}; {fix}")]
    Malformed { text: String, problem: String, at: usize, fix: String },
}

/// A parsed predicate; see the module note for the subset and the semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    expr: Expr,
}

/// How a string column compares; MySQL takes it from the column's collation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Collation {
    /// `utf8mb4_general_ci`, `utf8mb4_0900_ai_ci`, `utf8mb4_uca1400_ai_ci` and the like: trailing
    /// spaces, case and accents are ignored.
    #[default]
    CaseInsensitive,
    /// `_bin` collations and binary strings: exact.
    Binary,
}

impl Collation {
    /// The closest of the two for a MySQL collation name (`information_schema.COLUMNS`):
    /// `_ci` collations fold case, the rest (`_bin`, `_cs`, `binary`) compare exactly.
    pub fn of_mysql(name: &str) -> Collation {
        if name.to_ascii_lowercase().ends_with("_ci") {
            Collation::CaseInsensitive
        } else {
            Collation::Binary
        }
    }
}

/// The collation of each column: a default and per-column exceptions (names case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collations {
    default: Collation,
    columns: Vec<(String, Collation)>,
}

impl Collations {
    /// Every column compares by `default`.
    pub fn new(default: Collation) -> Self {
        Self { default, columns: Vec::new() }
    }

    /// `column` compares by `collation` instead of the default.
    pub fn with_column(mut self, column: impl Into<String>, collation: Collation) -> Self {
        self.columns.push((column.into(), collation));
        self
    }

    /// The collation `column` compares by.
    pub fn of(&self, column: &str) -> Collation {
        let exception = self.columns.iter().find(|(name, _)| name.eq_ignore_ascii_case(column));
        exception.map_or(self.default, |(_, collation)| *collation)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare { left: Operand, op: CmpOp, right: Operand },
    In { column: String, negated: bool, list: Vec<Literal> },
    IsNull { column: String, negated: bool },
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Column(String),
    Literal(Literal),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    /// Kept as written (`-12.50`), so the SQL rendering is the user's number.
    Number(String),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering.is_eq(),
            CmpOp::Ne => ordering.is_ne(),
            CmpOp::Lt => ordering.is_lt(),
            CmpOp::Le => ordering.is_le(),
            CmpOp::Gt => ordering.is_gt(),
            CmpOp::Ge => ordering.is_ge(),
        }
    }
}

impl Predicate {
    /// Parses `text`; every construct outside the supported subset is an error naming it.
    pub fn parse(text: &str) -> Result<Predicate, PredicateError> {
        if text.trim().is_empty() {
            return Err(PredicateError::Empty);
        }
        let located = |fault: Fault| match fault.kind {
            FaultKind::Unsupported(part) => PredicateError::Unsupported { text: text.into(), part, at: fault.at },
            FaultKind::Malformed { problem, fix } => {
                PredicateError::Malformed { text: text.into(), problem, at: fault.at, fix: fix.into() }
            }
        };
        let tokens = tokenize(text).map_err(located)?;
        Parser::new(tokens).predicate().map(|expr| Predicate { expr }).map_err(located)
    }

    /// Every column the predicate reads, once each (the first spelling), in order of first use.
    pub fn columns(&self) -> Vec<&str> {
        let mut columns = Vec::new();
        collect_columns(&self.expr, &mut columns);
        columns
    }

    /// The columns the predicate reads that `row` lacks; each makes its comparisons unknown.
    pub fn missing_columns(&self, row: &Map<String, Value>) -> Vec<&str> {
        self.columns().into_iter().filter(|column| lookup(row, column).is_none()).collect()
    }

    /// SQL for a MySQL/MariaDB `WHERE` clause, fully parenthesized so no surrounding operator
    /// can change its grouping; parsing it again yields this predicate. Quotes are doubled
    /// rather than backslash-escaped, so a string can never end early whatever the sql_mode;
    /// backslashes are doubled, which reads back as written unless the session runs with
    /// `NO_BACKSLASH_ESCAPES` (not the default), where each would count twice.
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        render(&self.expr, &mut out);
        out
    }

    /// True only when the predicate is TRUE for `row` (unknown counts as not matching).
    pub fn matches(&self, row: &Map<String, Value>, collations: &Collations) -> bool {
        evaluate(&self.expr, row, collations) == Some(true)
    }
}

fn collect_columns<'a>(expr: &'a Expr, out: &mut Vec<&'a str>) {
    let mut add = |column: &'a str| {
        if !out.iter().any(|seen| seen.eq_ignore_ascii_case(column)) {
            out.push(column);
        }
    };
    match expr {
        Expr::And(l, r) | Expr::Or(l, r) => {
            collect_columns(l, out);
            collect_columns(r, out);
        }
        Expr::Not(inner) => collect_columns(inner, out),
        Expr::Compare { left, right, .. } => {
            for operand in [left, right] {
                if let Operand::Column(column) = operand {
                    add(column);
                }
            }
        }
        Expr::In { column, .. } | Expr::IsNull { column, .. } => add(column),
        Expr::Bool(_) => {}
    }
}

fn render(expr: &Expr, out: &mut String) {
    match expr {
        Expr::And(l, r) | Expr::Or(l, r) => {
            out.push('(');
            render(l, out);
            out.push_str(if matches!(expr, Expr::And(..)) { " AND " } else { " OR " });
            render(r, out);
            out.push(')');
        }
        Expr::Not(inner) => {
            out.push_str("(NOT ");
            render(inner, out);
            out.push(')');
        }
        Expr::Compare { left, op, right } => {
            out.push('(');
            render_operand(left, out);
            out.extend([" ", op.sql(), " "]);
            render_operand(right, out);
            out.push(')');
        }
        Expr::In { column, negated, list } => {
            out.push('(');
            render_column(column, out);
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, literal) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_literal(literal, out);
            }
            out.push_str("))");
        }
        Expr::IsNull { column, negated } => {
            out.push('(');
            render_column(column, out);
            out.push_str(if *negated { " IS NOT NULL)" } else { " IS NULL)" });
        }
        Expr::Bool(value) => out.push_str(if *value { "TRUE" } else { "FALSE" }),
    }
}

fn render_operand(operand: &Operand, out: &mut String) {
    match operand {
        Operand::Column(name) => render_column(name, out),
        Operand::Literal(literal) => render_literal(literal, out),
    }
}

fn render_column(name: &str, out: &mut String) {
    out.push('`');
    out.push_str(&name.replace('`', "``"));
    out.push('`');
}

fn render_literal(literal: &Literal, out: &mut String) {
    match literal {
        Literal::Null => out.push_str("NULL"),
        Literal::Bool(value) => out.push_str(if *value { "TRUE" } else { "FALSE" }),
        Literal::Number(n) => out.push_str(n),
        Literal::Text(text) => {
            out.push('\'');
            for c in text.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\\' => out.push_str("\\\\"),
                    // A raw NUL byte in the statement text is not safe with every client library.
                    '\0' => out.push_str("\\0"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
    }
}
