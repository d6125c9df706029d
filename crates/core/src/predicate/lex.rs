//! Splits a predicate into tokens, rejecting at once every character sequence that starts a
//! construct outside the subset (comments, variables, operators, functions, odd literals), so
//! the parser only ever sees supported pieces.

use super::CmpOp;

/// Words MySQL reads as operators or syntax we do not evaluate; named in the rejection instead
/// of being mistaken for column names.
const UNSUPPORTED_WORDS: &[&str] = &[
    "LIKE", "BETWEEN", "REGEXP", "RLIKE", "SOUNDS", "XOR", "DIV", "MOD", "SELECT", "EXISTS", "CASE", "WHEN", "THEN",
    "ELSE", "COLLATE", "BINARY", "INTERVAL", "MATCH",
];

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(Keyword),
    Column(String),
    Text(String),
    Number(String),
    Cmp(CmpOp),
    Open,
    Close,
    Comma,
    Minus,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    True,
    False,
}

const KEYWORDS: [(&str, Keyword); 8] = [
    ("AND", Keyword::And),
    ("OR", Keyword::Or),
    ("NOT", Keyword::Not),
    ("IN", Keyword::In),
    ("IS", Keyword::Is),
    ("NULL", Keyword::Null),
    ("TRUE", Keyword::True),
    ("FALSE", Keyword::False),
];

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// 1-based character offset, as the messages report it.
    pub(super) at: usize,
}

/// A parse failure before the predicate's text is attached.
pub(super) struct Fault {
    pub(super) at: usize,
    pub(super) kind: FaultKind,
}

pub(super) enum FaultKind {
    Unsupported(String),
    Malformed { problem: String, fix: &'static str },
}

pub(super) fn unsupported(part: impl Into<String>, at: usize) -> Fault {
    Fault { at, kind: FaultKind::Unsupported(part.into()) }
}

pub(super) fn malformed(problem: impl Into<String>, at: usize, fix: &'static str) -> Fault {
    Fault { at, kind: FaultKind::Malformed { problem: problem.into(), fix } }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, Fault> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (c, rest, at) = (chars[i], &chars[i..], i + 1);
        let next = rest.get(1).copied();
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '=' | '<' | '>' | '!' => operator(rest, at)?,
            '\'' => string(rest, at)?,
            '`' => quoted_column(rest, at)?,
            '"' => return Err(double_quoted(rest, at)),
            // MySQL starts a comment at "-- " only; "--5" is two minus signs (rejected later).
            '-' if next == Some('-') && rest.get(2).is_none_or(|c| c.is_whitespace()) => {
                return Err(unsupported("comment --", at))
            }
            '-' => (Tok::Minus, 1),
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => number(rest, at)?,
            c if c.is_ascii_alphabetic() || c == '_' => word(rest, at)?,
            _ => return Err(stray(rest, at)),
        };
        tokens.push(Token { tok, at });
        i += len;
    }
    tokens.push(Token { tok: Tok::End, at: chars.len() + 1 });
    Ok(tokens)
}

fn operator(rest: &[char], at: usize) -> Result<(Tok, usize), Fault> {
    let next = rest.get(1).copied();
    Ok(match (rest[0], next) {
        ('<', Some('=')) if rest.get(2) == Some(&'>') => return Err(unsupported("operator <=>", at)),
        ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
        ('<', Some('>')) | ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
        ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
        ('<', Some('<')) => return Err(unsupported("operator <<", at)),
        ('>', Some('>')) => return Err(unsupported("operator >>", at)),
        ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
        ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
        ('=', _) => (Tok::Cmp(CmpOp::Eq), 1),
        _ => return Err(unsupported("operator ! (write NOT)", at)),
    })
}

/// A single-quoted string as MySQL's default sql_mode reads it (`''` and backslash escapes).
fn string(rest: &[char], at: usize) -> Result<(Tok, usize), Fault> {
    let unterminated =
        || malformed("unterminated string", at, "close it with a single quote; write a quote inside as ''");
    let mut value = String::new();
    let mut i = 1;
    loop {
        match rest.get(i) {
            None => return Err(unterminated()),
            Some('\'') if rest.get(i + 1) == Some(&'\'') => {
                value.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((Tok::Text(value), i + 1)),
            Some('\\') => {
                let escaped = *rest.get(i + 1).ok_or_else(unterminated)?;
                match escaped {
                    '0' => value.push('\0'),
                    'b' => value.push('\u{8}'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'Z' => value.push('\u{1a}'),
                    // MySQL keeps these two escaped so LIKE patterns can use them.
                    '%' | '_' => value.extend(['\\', escaped]),
                    other => value.push(other),
                }
                i += 2;
            }
            Some(&c) => {
                value.push(c);
                i += 1;
            }
        }
    }
}

fn quoted_column(rest: &[char], at: usize) -> Result<(Tok, usize), Fault> {
    let mut name = String::new();
    let mut i = 1;
    loop {
        match rest.get(i) {
            None => {
                return Err(malformed(
                    "unterminated column name",
                    at,
                    "close it with a backtick; write a backtick inside as ``",
                ))
            }
            Some('`') if rest.get(i + 1) == Some(&'`') => {
                name.push('`');
                i += 2;
            }
            Some('`') if name.is_empty() => {
                return Err(malformed("empty column name ``", at, "name a column of the table"))
            }
            Some('`') => return Ok((Tok::Column(name), i + 1)),
            Some(&c) => {
                name.push(c);
                i += 1;
            }
        }
    }
}

fn double_quoted(rest: &[char], at: usize) -> Fault {
    let end = rest.iter().skip(1).position(|&c| c == '"').map_or(rest.len(), |p| p + 2);
    let quoted: String = rest[..end].iter().collect();
    malformed(
        format!("double-quoted {quoted}"),
        at,
        "write strings in single quotes ('pending') and column names bare or in backticks (`status`); \
         MySQL reads double quotes as a string or, under sql_mode ANSI_QUOTES, as a column name, so sameday accepts neither",
    )
}

fn number(rest: &[char], at: usize) -> Result<(Tok, usize), Fault> {
    let digits = |from: usize| rest[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut len = digits(0);
    if rest.get(len) == Some(&'.') {
        len += 1 + digits(len + 1);
    }
    if rest.get(len).is_some_and(|&c| is_word_char(c) || c == '.') {
        let run: String = rest.iter().take_while(|&&c| is_word_char(c) || c == '.').collect();
        return Err(unsupported(format!("number {run}"), at));
    }
    Ok((Tok::Number(rest[..len].iter().collect()), len))
}

fn word(rest: &[char], at: usize) -> Result<(Tok, usize), Fault> {
    let len = rest.iter().take_while(|&&c| is_word_char(c)).count();
    let text: String = rest[..len].iter().collect();
    let upper = text.to_ascii_uppercase();
    if rest.get(len) == Some(&'\'') {
        return Err(unsupported(format!("string prefix {text}'"), at));
    }
    let keyword = KEYWORDS.iter().find(|(name, _)| *name == upper).map(|(_, k)| *k);
    let opens = rest[len..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
    if opens && !matches!(keyword, Some(Keyword::And | Keyword::Or | Keyword::Not | Keyword::In)) {
        return Err(unsupported(format!("function {text}()"), at));
    }
    if UNSUPPORTED_WORDS.contains(&upper.as_str()) {
        return Err(unsupported(upper, at));
    }
    Ok((keyword.map_or(Tok::Column(text), Tok::Word), len))
}

/// A character that starts no supported token: name the construct it starts where we can.
fn stray(rest: &[char], at: usize) -> Fault {
    let next = rest.get(1).copied();
    match (rest[0], next) {
        ('&', Some('&')) => unsupported("operator && (write AND)", at),
        ('|', Some('|')) => unsupported("operator || (write OR)", at),
        ('/', Some('*')) => unsupported("comment /*", at),
        ('#', _) => unsupported("comment #", at),
        (':', Some('=')) => unsupported("operator :=", at),
        (';', _) => unsupported("statement separator ;", at),
        ('?', _) => unsupported("placeholder ?", at),
        ('@', _) => {
            let name: String = rest.iter().skip(1).take_while(|&&c| c == '@' || is_word_char(c)).collect();
            unsupported(format!("variable @{name}"), at)
        }
        (c @ ('+' | '*' | '/' | '%' | '&' | '|' | '^' | '~'), _) => unsupported(format!("operator {c}"), at),
        (c, _) if c.is_alphabetic() => malformed(
            format!("character {c} in a column name"),
            at,
            "put column names with characters beyond A-Z, 0-9, _ and $ in backticks (`name`)",
        ),
        (c, _) => unsupported(format!("character {c}"), at),
    }
}

pub(super) fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(keyword) => KEYWORDS.iter().find(|(_, k)| k == keyword).map_or("", |(name, _)| name).into(),
        Tok::Column(name) => format!("column {name}"),
        Tok::Text(_) => "a string".into(),
        Tok::Number(n) => format!("number {n}"),
        Tok::Cmp(op) => op.sql().into(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::Comma => ",".into(),
        Tok::Minus => "-".into(),
        Tok::End => "the end".into(),
    }
}
