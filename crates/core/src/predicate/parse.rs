//! The grammar, by precedence: `or := and (OR and)*`, `and := not (AND not)*`,
//! `not := NOT not | primary`, `primary := ( or ) | TRUE | FALSE | condition`. Nesting is
//! bounded, so no predicate can exhaust the stack of the recursive code that handles the tree.

use super::lex::{describe, malformed, unsupported, Fault, Keyword, Tok, Token};
use super::{Expr, Literal, Operand};

/// Bounds the nesting of the parsed tree, so parsing, rendering and evaluating (all recursive)
/// cannot exhaust a thread's stack on a hostile or generated predicate.
pub(super) const MAX_OPERATORS: usize = 256;

pub(super) struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    operators: usize,
}

impl Parser {
    pub(super) fn new(tokens: Vec<Token>) -> Self {
        Self { tokens, pos: 0, operators: 0 }
    }

    fn peek(&self) -> &Token {
        // `tokenize` always ends the list with `End`, and `advance` never passes it.
        &self.tokens[self.pos]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn eat(&mut self, keyword: Keyword) -> bool {
        let found = self.peek().tok == Tok::Word(keyword);
        if found {
            self.advance();
        }
        found
    }

    /// Consumes an AND, OR, NOT or `(`, counting it against [`MAX_OPERATORS`].
    fn take_operator(&mut self) -> Result<(), Fault> {
        let at = self.advance().at;
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(malformed(
                format!("more than {MAX_OPERATORS} AND, OR, NOT and parentheses"),
                at,
                "shorten the predicate; use IN (...) for a long list of alternatives",
            ));
        }
        Ok(())
    }

    pub(super) fn predicate(mut self) -> Result<Expr, Fault> {
        let expr = self.or()?;
        let rest = self.peek().clone();
        match rest.tok {
            Tok::End => Ok(expr),
            Tok::Close => Err(malformed("unmatched )", rest.at, "remove it or add the ( it closes")),
            _ => Err(unexpected(&rest, "after a complete condition", "join conditions with AND or OR")),
        }
    }

    fn or(&mut self) -> Result<Expr, Fault> {
        let mut left = self.and()?;
        while self.peek().tok == Tok::Word(Keyword::Or) {
            self.take_operator()?;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, Fault> {
        let mut left = self.not()?;
        while self.peek().tok == Tok::Word(Keyword::And) {
            self.take_operator()?;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, Fault> {
        if self.peek().tok == Tok::Word(Keyword::Not) {
            self.take_operator()?;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, Fault> {
        let first = self.peek().clone();
        let next = self.tokens.get(self.pos + 1).map(|t| &t.tok);
        let compared = matches!(next, Some(Tok::Cmp(_) | Tok::Word(Keyword::In | Keyword::Is | Keyword::Not)));
        match first.tok {
            Tok::Open => {
                self.take_operator()?;
                let inner = self.or()?;
                let close = self.advance();
                if close.tok != Tok::Close {
                    return Err(unexpected(&close, "where a ) should close a (", "close every ( with a )"));
                }
                Ok(inner)
            }
            Tok::Word(keyword @ (Keyword::True | Keyword::False)) if !compared => {
                self.advance();
                Ok(Expr::Bool(keyword == Keyword::True))
            }
            _ => self.condition(),
        }
    }

    fn condition(&mut self) -> Result<Expr, Fault> {
        let first = self.peek().clone();
        let left = self.operand(
            "where a condition should start",
            "start a condition with a column name, e.g. status = 'pending'",
        )?;
        let verb = self.advance();
        match verb.tok {
            Tok::Cmp(op) => {
                let right = self.operand(&format!("after {}", op.sql()), "compare with a literal or a column")?;
                if matches!((&left, &right), (Operand::Literal(_), Operand::Literal(_))) {
                    return Err(malformed(
                        "comparison of two literals",
                        first.at,
                        "compare a column with a literal or with another column",
                    ));
                }
                Ok(Expr::Compare { left, op, right })
            }
            Tok::Word(Keyword::In) => self.in_list(column_of(left, "IN", first.at)?, false),
            Tok::Word(Keyword::Not) => {
                let word = self.advance();
                if word.tok != Tok::Word(Keyword::In) {
                    return Err(unexpected(
                        &word,
                        "after NOT",
                        "write NOT IN (...), or NOT before the whole condition",
                    ));
                }
                self.in_list(column_of(left, "NOT IN", first.at)?, true)
            }
            Tok::Word(Keyword::Is) => self.is_null(column_of(left, "IS", first.at)?),
            _ => Err(unexpected(
                &verb,
                &format!("after {}", describe(&first.tok)),
                "follow it with a comparison (= <> != < <= > >=), IN (...) or IS [NOT] NULL, e.g. status = 'pending'",
            )),
        }
    }

    fn operand(&mut self, context: &str, fix: &'static str) -> Result<Operand, Fault> {
        let token = self.advance();
        let literal = match token.tok {
            Tok::Column(name) => return Ok(Operand::Column(name)),
            Tok::Text(text) => Literal::Text(text),
            Tok::Number(n) => Literal::Number(n),
            Tok::Word(Keyword::Null) => Literal::Null,
            Tok::Word(Keyword::True) => Literal::Bool(true),
            Tok::Word(Keyword::False) => Literal::Bool(false),
            Tok::Minus => match self.advance().tok {
                Tok::Number(n) => Literal::Number(format!("-{n}")),
                _ => return Err(unsupported("operator -", token.at)),
            },
            _ => return Err(unexpected(&token, context, fix)),
        };
        Ok(Operand::Literal(literal))
    }

    fn in_list(&mut self, column: String, negated: bool) -> Result<Expr, Fault> {
        let open = self.advance();
        if open.tok != Tok::Open {
            return Err(unexpected(&open, "after IN", "list the values in parentheses: IN ('a', 'b')"));
        }
        let mut list = Vec::new();
        loop {
            let at = self.peek().at;
            match self.operand("in an IN list", "list literal values: IN ('a', 'b'), at least one")? {
                Operand::Literal(literal) => list.push(literal),
                Operand::Column(name) => {
                    return Err(malformed(
                        format!("column {name} in an IN list"),
                        at,
                        "IN lists hold literal values only; compare columns with =",
                    ))
                }
            }
            let separator = self.advance();
            match separator.tok {
                Tok::Comma => {}
                Tok::Close => return Ok(Expr::In { column, negated, list }),
                _ => return Err(unexpected(&separator, "in an IN list", "separate values with , and close with )")),
            }
        }
    }

    fn is_null(&mut self, column: String) -> Result<Expr, Fault> {
        let negated = self.eat(Keyword::Not);
        let word = self.advance();
        let not = if negated { "NOT " } else { "" };
        match word.tok {
            Tok::Word(Keyword::Null) => Ok(Expr::IsNull { column, negated }),
            Tok::Word(Keyword::True) => Err(unsupported(format!("IS {not}TRUE"), word.at)),
            Tok::Word(Keyword::False) => Err(unsupported(format!("IS {not}FALSE"), word.at)),
            Tok::Column(w) if w.eq_ignore_ascii_case("unknown") => {
                Err(unsupported(format!("IS {not}UNKNOWN"), word.at))
            }
            _ => Err(unexpected(&word, "after IS", "write IS NULL or IS NOT NULL")),
        }
    }
}

fn column_of(operand: Operand, verb: &str, at: usize) -> Result<String, Fault> {
    match operand {
        Operand::Column(name) => Ok(name),
        Operand::Literal(_) => Err(malformed(
            format!("{verb} after a literal"),
            at,
            "put the column on the left, e.g. status IN ('a', 'b') or note IS NULL",
        )),
    }
}

fn unexpected(token: &Token, context: &str, fix: &'static str) -> Fault {
    match token.tok {
        // A minus where no number may follow can only be arithmetic.
        Tok::Minus => unsupported("operator -", token.at),
        Tok::End => malformed(format!("the predicate ends {context}"), token.at, fix),
        _ => malformed(format!("unexpected {} {context}", describe(&token.tok)), token.at, fix),
    }
}
