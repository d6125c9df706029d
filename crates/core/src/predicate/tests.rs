use super::eval::{evaluate, Decimal};
use super::parse::MAX_OPERATORS;
use super::*;
use proptest::prelude::*;
use serde_json::json;

fn parse(text: &str) -> Predicate {
    Predicate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn error(text: &str) -> String {
    match Predicate::parse(text) {
        Ok(p) => panic!("{text} parsed as {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn row(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn matches(predicate: &str, image: Value) -> bool {
    parse(predicate).matches(&row(image), &Collations::default())
}

fn eval(predicate: &str, image: Value) -> Option<bool> {
    evaluate(&parse(predicate).expr, &row(image), &Collations::default())
}

fn col(name: &str) -> Operand {
    Operand::Column(name.into())
}

fn num(n: &str) -> Operand {
    Operand::Literal(Literal::Number(n.into()))
}

fn cmp(left: Operand, op: CmpOp, right: Operand) -> Expr {
    Expr::Compare { left, op, right }
}

#[test]
fn parses_every_comparison_operator() {
    for (text, op) in [
        ("=", CmpOp::Eq),
        ("<>", CmpOp::Ne),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ] {
        assert_eq!(parse(&format!("a {text} 1")).expr, cmp(col("a"), op, num("1")), "{text}");
        assert_eq!(parse(&format!("a{text}-1")).expr, cmp(col("a"), op, num("-1")), "{text} unspaced");
    }
}

#[test]
fn parses_literals_columns_and_either_side() {
    assert_eq!(parse("1 < a").expr, cmp(num("1"), CmpOp::Lt, col("a")));
    assert_eq!(parse("a = b").expr, cmp(col("a"), CmpOp::Eq, col("b")));
    assert_eq!(parse("a = - 12.50").expr, cmp(col("a"), CmpOp::Eq, num("-12.50")));
    assert_eq!(parse("a = .5").expr, cmp(col("a"), CmpOp::Eq, num(".5")));
    assert_eq!(parse("a = NULL").expr, cmp(col("a"), CmpOp::Eq, Operand::Literal(Literal::Null)));
    assert_eq!(parse("a = true").expr, cmp(col("a"), CmpOp::Eq, Operand::Literal(Literal::Bool(true))));
    assert_eq!(parse("`we``ird col` = 1").expr, cmp(col("we`ird col"), CmpOp::Eq, num("1")));
    assert_eq!(parse("`select` = 1").expr, cmp(col("select"), CmpOp::Eq, num("1")));
    assert_eq!(parse("a_1$ = 1").expr, cmp(col("a_1$"), CmpOp::Eq, num("1")));
    let text = |p: &str| match parse(p).expr {
        Expr::Compare { right: Operand::Literal(Literal::Text(t)), .. } => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(text("a = 'it''s'"), "it's");
    assert_eq!(text(r"a = 'it\'s \\ \n\t\0 \%\x'"), "it's \\ \n\t\0 \\%x");
    assert_eq!(text("a = ''"), "");
}

#[test]
fn parses_in_is_null_and_booleans() {
    let p = parse("status not in ('a', NULL, 3)");
    let list = vec![Literal::Text("a".into()), Literal::Null, Literal::Number("3".into())];
    assert_eq!(p.expr, Expr::In { column: "status".into(), negated: true, list });
    assert_eq!(parse("a IS NULL").expr, Expr::IsNull { column: "a".into(), negated: false });
    assert_eq!(parse("a is not null").expr, Expr::IsNull { column: "a".into(), negated: true });
    assert_eq!(parse("TRUE").expr, Expr::Bool(true));
    assert_eq!(parse("(false)").expr, Expr::Bool(false));
    assert_eq!(parse("TRUE = a").expr, cmp(Operand::Literal(Literal::Bool(true)), CmpOp::Eq, col("a")));
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    let (a, b, c) =
        (cmp(col("a"), CmpOp::Eq, num("1")), cmp(col("b"), CmpOp::Eq, num("2")), cmp(col("c"), CmpOp::Eq, num("3")));
    let and = Expr::And(Box::new(b.clone()), Box::new(c.clone()));
    assert_eq!(parse("a = 1 OR b = 2 AND c = 3").expr, Expr::Or(Box::new(a.clone()), Box::new(and)));
    let or = Expr::Or(Box::new(a.clone()), Box::new(b.clone()));
    assert_eq!(parse("(a = 1 OR b = 2) and c = 3").expr, Expr::And(Box::new(or), Box::new(c.clone())));
    let not = Expr::Not(Box::new(a.clone()));
    assert_eq!(parse("NOT a = 1 AND b = 2").expr, Expr::And(Box::new(not), Box::new(b)));
    assert_eq!(parse("not not a = 1").expr, Expr::Not(Box::new(Expr::Not(Box::new(a)))));
}

#[test]
fn the_message_names_like_and_its_position() {
    assert_eq!(
        error("status LIKE 'p%'"),
        "predicate \"status LIKE 'p%'\": LIKE at character 8 is not supported; sameday evaluates predicates \
         itself and supports comparisons (= <> != < <= > >=), IN, IS [NOT] NULL, AND, OR, NOT, parentheses, \
         string and number literals and column names"
    );
}

#[test]
fn rejects_unsupported_constructs_naming_each() {
    for (text, part) in [
        ("LOWER(status) = 'x'", "function LOWER() at character 1"),
        ("a = now ()", "function now() at character 5"),
        ("a not like 'x'", "LIKE at character 7"),
        ("a BETWEEN 1 AND 2", "BETWEEN at character 3"),
        ("a regexp 'x'", "REGEXP at character 3"),
        ("a = 1 xor b = 2", "XOR at character 7"),
        ("a = b + 1", "operator + at character 7"),
        ("a = b - 1", "operator - at character 7"),
        ("a - 1 = 2", "operator - at character 3"),
        ("a = --1", "operator - at character 5"),
        ("a * 2 = 4", "operator * at character 3"),
        ("a = 1 && b = 2", "operator && (write AND) at character 7"),
        ("a = 1 || b = 2", "operator || (write OR) at character 7"),
        ("!(a = 1)", "operator ! (write NOT) at character 1"),
        ("a <=> 1", "operator <=> at character 3"),
        ("a IN (SELECT id FROM t)", "SELECT at character 7"),
        ("EXISTS (SELECT 1)", "function EXISTS() at character 1"),
        ("a = 1; DROP TABLE t", "statement separator ; at character 6"),
        ("a = 1 -- why", "comment -- at character 7"),
        ("a = 1 # why", "comment # at character 7"),
        ("a = 1 /* why */", "comment /* at character 7"),
        ("a = @limit", "variable @limit at character 5"),
        ("a = @@sql_mode", "variable @@sql_mode at character 5"),
        ("a = ?", "placeholder ? at character 5"),
        ("a = 1e3", "number 1e3 at character 5"),
        ("a = 0x1F", "number 0x1F at character 5"),
        ("a = X'1F'", "string prefix X' at character 5"),
        ("a = _utf8mb4'x'", "string prefix _utf8mb4' at character 5"),
        ("a IS TRUE", "IS TRUE at character 6"),
        ("a IS NOT unknown", "IS NOT UNKNOWN at character 10"),
        ("a = 'x' COLLATE utf8mb4_bin", "COLLATE at character 9"),
        ("a = {d '2026-01-01'}", "character { at character 5"),
    ] {
        let message = error(text);
        assert!(message.contains(&format!(": {part} is not supported; sameday evaluates")), "{text}: {message}");
    }
}

#[test]
fn rejects_malformed_predicates_with_a_fix() {
    assert_eq!(error(""), PredicateError::Empty.to_string());
    assert_eq!(error(" \n\t"), PredicateError::Empty.to_string());
    for (text, problem) in [
        ("a = \"x\"", "double-quoted \"x\" at character 5; write strings in single quotes"),
        ("\"a\" = 'x'", "double-quoted \"a\" at character 1"),
        ("a = 'x", "unterminated string at character 5"),
        ("a = 'x\\", "unterminated string at character 5"),
        ("`a = 1", "unterminated column name at character 1"),
        ("`` = 1", "empty column name `` at character 1"),
        (
            "a = 1 b = 2",
            "unexpected column b after a complete condition at character 7; join conditions with AND or OR",
        ),
        ("a = 1)", "unmatched ) at character 6"),
        ("(a = 1", "the predicate ends where a ) should close a ( at character 7"),
        ("a = 1 AND", "the predicate ends where a condition should start at character 10"),
        ("active", "the predicate ends after column active at character 7"),
        ("active AND b = 1", "unexpected AND after column active at character 8"),
        ("1 = 1", "comparison of two literals at character 1"),
        ("'x' IN ('x')", "IN after a literal at character 1"),
        ("a IN ()", "unexpected ) in an IN list at character 7"),
        ("a IN (b)", "column b in an IN list at character 7"),
        ("a IN 1", "unexpected number 1 after IN at character 6"),
        ("a NOT = 1", "unexpected = after NOT at character 7"),
        ("a IS 1", "unexpected number 1 after IS at character 6"),
        ("a = = 1", "unexpected = after = at character 5"),
        ("café = 1", "character é in a column name at character 4"),
    ] {
        let message = error(text);
        assert!(message.contains(problem), "{text}: {message}");
        assert!(message.starts_with(&format!("predicate {text:?}: ")), "{text}: {message}");
    }
}

#[test]
fn rejects_predicates_nested_beyond_the_limit() {
    let deep = format!("{}a = 1{}", "(".repeat(MAX_OPERATORS + 1), ")".repeat(MAX_OPERATORS + 1));
    assert!(error(&deep).contains("more than 256 AND, OR, NOT and parentheses"));
    let long = vec!["a = 1"; MAX_OPERATORS + 2].join(" OR ");
    assert!(error(&long).contains("use IN (...)"));
    parse(&vec!["a = 1"; MAX_OPERATORS].join(" OR "));
}

#[test]
fn to_sql_quotes_and_parenthesizes_everything() {
    assert_eq!(
        parse("a = 1 OR b = 'x' AND NOT c IS NULL").to_sql(),
        "((`a` = 1) OR ((`b` = 'x') AND (NOT (`c` IS NULL))))"
    );
    assert_eq!(parse("x != -2.50").to_sql(), "(`x` <> -2.50)");
    assert_eq!(parse("s NOT IN ('a', NULL, 1, TRUE)").to_sql(), "(`s` NOT IN ('a', NULL, 1, TRUE))");
    assert_eq!(parse("`we``ird` = b").to_sql(), "(`we``ird` = `b`)");
    assert_eq!(parse(r"a = 'it''s \'a\' \\ back\0'").to_sql(), r"(`a` = 'it''s ''a'' \\ back\0')");
    assert_eq!(parse("FALSE OR TRUE").to_sql(), "(FALSE OR TRUE)");
}

#[test]
fn columns_are_listed_once_in_order_of_first_use() {
    let p = parse("b = 1 AND (A IN (1) OR a = c) AND NOT d IS NULL AND b = e AND TRUE");
    assert_eq!(p.columns(), ["b", "A", "c", "d", "e"]);
    assert!(parse("TRUE").columns().is_empty());
}

#[test]
fn missing_columns_are_reported_and_never_match() {
    let p = parse("status = 'pending' OR Note IS NULL");
    let image = row(json!({"STATUS": "done"}));
    assert_eq!(p.missing_columns(&image), ["Note"]);
    assert!(!p.matches(&image, &Collations::default()));
    assert_eq!(eval("note IS NULL", json!({})), None);
    assert_eq!(eval("NOT note IS NULL", json!({})), None);
    assert_eq!(eval("note IN (1)", json!({})), None);
    assert!(parse("note IS NULL").missing_columns(&row(json!({"note": null}))).is_empty());
}

#[test]
fn column_names_match_exactly_first_then_ignoring_case() {
    assert!(matches("STATUS = 'x'", json!({"status": "x"})));
    assert!(matches("Status = 'x'", json!({"status": "y", "Status": "x"})));
    assert!(!matches("status = 'x'", json!({"Status": "x", "status": "y"})));
}

#[test]
fn null_makes_comparisons_unknown_in_three_valued_logic() {
    let image = json!({"n": null, "one": 1});
    assert_eq!(eval("n = 1", image.clone()), None);
    assert_eq!(eval("n <> 1", image.clone()), None);
    assert_eq!(eval("one = NULL", image.clone()), None);
    assert_eq!(eval("NOT n = 1", image.clone()), None);
    assert_eq!(eval("n = 1 AND one = 2", image.clone()), Some(false));
    assert_eq!(eval("n = 1 AND one = 1", image.clone()), None);
    assert_eq!(eval("n = 1 OR one = 1", image.clone()), Some(true));
    assert_eq!(eval("n = 1 OR one = 2", image.clone()), None);
    assert_eq!(eval("one = 2 OR n = 1", image.clone()), None);
    assert_eq!(eval("n IS NULL AND one IS NOT NULL", image.clone()), Some(true));
    assert_eq!(eval("NOT (TRUE AND FALSE)", image), Some(true));
}

#[test]
fn in_is_true_on_any_equal_else_unknown_if_null_else_false() {
    let image = json!({"s": "b", "n": null});
    assert_eq!(eval("s IN ('a', 'B')", image.clone()), Some(true));
    assert_eq!(eval("s IN ('a', NULL, 'b')", image.clone()), Some(true));
    assert_eq!(eval("s IN ('a', NULL)", image.clone()), None);
    assert_eq!(eval("s IN ('a', 'c')", image.clone()), Some(false));
    assert_eq!(eval("s NOT IN ('a', 'c')", image.clone()), Some(true));
    assert_eq!(eval("s NOT IN ('a', NULL)", image.clone()), None);
    assert_eq!(eval("s NOT IN ('b')", image.clone()), Some(false));
    assert_eq!(eval("n IN ('a')", image.clone()), None);
    assert_eq!(eval("n NOT IN ('a')", image), None);
}

#[test]
fn case_only_differences_match_unless_binary() {
    let p = parse("status = 'Pending'");
    let image = row(json!({"status": "pending"}));
    assert!(p.matches(&image, &Collations::default()));
    assert!(!p.matches(&image, &Collations::new(Collation::Binary)));
    let binary_status = Collations::default().with_column("STATUS", Collation::Binary);
    assert!(!p.matches(&image, &binary_status));
    assert!(p.matches(&row(json!({"status": "Pending"})), &binary_status));
    // Two columns compare binary when either is binary, as MySQL lets `_bin` win.
    let q = parse("a = b");
    let pair = row(json!({"a": "X", "b": "x"}));
    assert!(q.matches(&pair, &Collations::default()));
    assert!(!q.matches(&pair, &Collations::default().with_column("b", Collation::Binary)));
}

#[test]
fn accents_and_trailing_spaces_fold_under_case_insensitive() {
    assert!(matches("name = 'Élan'", json!({"name": "elan  "})));
    assert!(matches("name = 'Ä'", json!({"name": "a"})));
    assert!(matches("name = 'Über'", json!({"name": "u\u{308}BER"})));
    assert!(!matches("name = ' a'", json!({"name": "a"})), "leading spaces count");
    assert!(matches("name < 'F'", json!({"name": "é"})));
    assert!(matches("name > 'b'", json!({"name": "C"})));
    let binary = Collations::new(Collation::Binary);
    assert!(!parse("name = 'e'").matches(&row(json!({"name": "é"})), &binary));
    assert!(!parse("name = 'e'").matches(&row(json!({"name": "e "})), &binary));
    assert!(parse("name < 'a'").matches(&row(json!({"name": "Z"})), &binary));
}

#[test]
fn numbers_compare_exactly_across_integers_decimals_and_floats() {
    assert!(matches("amount = 12.5", json!({"amount": "12.50"})));
    assert!(matches("amount > 12.49", json!({"amount": "12.50"})));
    assert!(matches("amount < 100", json!({"amount": "-100000.5"})));
    assert!(matches("n = 3.0", json!({"n": 3})));
    assert!(matches("n > -1", json!({"n": 0})));
    assert!(matches("n = 1000", json!({"n": 1e3})));
    assert!(matches("n < 0.0001", json!({"n": 1.5e-7})));
    assert!(matches("n > 18446744073709551614", json!({"n": 18446744073709551615u64})));
    assert!(matches("n = 9007199254740993", json!({"n": 9007199254740993u64})));
    assert!(!matches("n = 9007199254740992", json!({"n": 9007199254740993u64})));
    assert!(matches("n = -0", json!({"n": 0})));
    assert!(matches("a = b", json!({"a": 2, "b": "2.000"})));
    assert!(matches("a < b", json!({"a": -2.5, "b": -2.25})));
    assert!(matches("flag = TRUE", json!({"flag": 1})));
    assert!(matches("flag = 0", json!({"flag": false})));
}

#[test]
fn strings_read_as_numbers_by_their_leading_number() {
    assert!(matches("code = 12", json!({"code": "12abc"})));
    assert!(matches("code = 0", json!({"code": "abc"})));
    assert!(matches("code = 3", json!({"code": " 3"})));
    assert!(matches("code = -4.5", json!({"code": "-4.5e0x"})));
    assert!(matches("code = 1500", json!({"code": "1.5E3"})));
    assert!(matches("code = 0", json!({"code": ""})));
    assert!(matches("'7 dwarves' = n", json!({"n": 7})));
    // Text against text stays text: DECIMAL strings compare with quoted values as strings.
    assert!(!matches("amount = '12.5'", json!({"amount": "12.50"})));
}

#[test]
fn dates_compare_as_points_in_time() {
    assert!(matches("due >= '2026-06-10 08:00:00'", json!({"due": "2026-06-10T08:00:00"})));
    assert!(matches("due = '2026-06-10 08:00:00.5'", json!({"due": "2026-06-10T08:00:00.500"})));
    assert!(matches("due < '2026-06-11'", json!({"due": "2026-06-10T23:59:59.999"})));
    assert!(matches("day = '2026-06-10 00:00:00'", json!({"day": "2026-06-10"})));
    assert!(matches("ts > '2026-06-10'", json!({"ts": "2026-06-10T00:00:01Z"})));
    assert!(!matches("due = '2026-06-10 9:00:00'", json!({"due": "2026-06-10T09:00:00"})), "not a date: text");
}

#[test]
fn json_values_compare_as_their_text() {
    assert!(matches("tags = '[\"a\",\"b\"]'", json!({"tags": ["a", "b"]})));
    assert!(matches("doc = '{\"k\":1}'", json!({"doc": {"k": 1}})));
}

#[test]
fn collations_map_from_mysql_names() {
    assert_eq!(Collation::of_mysql("utf8mb4_0900_ai_ci"), Collation::CaseInsensitive);
    assert_eq!(Collation::of_mysql("latin1_swedish_ci"), Collation::CaseInsensitive);
    assert_eq!(Collation::of_mysql("utf8mb4_bin"), Collation::Binary);
    assert_eq!(Collation::of_mysql("utf8mb4_0900_as_cs"), Collation::Binary);
    assert_eq!(Collation::of_mysql("binary"), Collation::Binary);
}

#[test]
fn decimals_order_like_numbers() {
    let ordered = ["-1e3", "-12.5", "-0.001", "0", "0.00", "1e-3", "0.01", "1", "1.000001", "9", "10", "1e20"];
    for pair in ordered.windows(2) {
        let (a, b) = (Decimal::parse(pair[0]), Decimal::parse(pair[1]));
        assert!(a <= b, "{} <= {}", pair[0], pair[1]);
    }
    assert_eq!(Decimal::parse("0"), Decimal::parse("-0.000"));
    assert_eq!(Decimal::parse("1e999999999999999999999"), Decimal::parse("1e999999999999999999998"));
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        "-?[0-9]{1,6}(\\.[0-9]{0,3})?".prop_map(Literal::Number),
        "\\.[0-9]{1,3}".prop_map(Literal::Number),
        any::<String>().prop_map(Literal::Text),
        "['\\\\`\"a\\x00\n%_ ]{0,6}".prop_map(Literal::Text),
    ]
}

fn column() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z_][A-Za-z0-9_$]{0,5}", "[^\\x00]{1,6}", "[`' a]{1,4}"]
}

fn condition() -> impl Strategy<Value = Expr> {
    let operator = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ];
    let other = prop_oneof![column().prop_map(Operand::Column), literal().prop_map(Operand::Literal)];
    prop_oneof![
        (column(), operator.clone(), other).prop_map(|(c, op, right)| cmp(Operand::Column(c), op, right)),
        (literal(), operator, column()).prop_map(|(l, op, c)| cmp(Operand::Literal(l), op, Operand::Column(c))),
        (column(), any::<bool>(), prop::collection::vec(literal(), 1..4))
            .prop_map(|(column, negated, list)| Expr::In { column, negated, list }),
        (column(), any::<bool>()).prop_map(|(column, negated)| Expr::IsNull { column, negated }),
        any::<bool>().prop_map(Expr::Bool),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    condition().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #[test]
    fn to_sql_parses_back_to_the_same_predicate(expr in expr()) {
        let predicate = Predicate { expr };
        let sql = predicate.to_sql();
        let reparsed = Predicate::parse(&sql).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        prop_assert_eq!(reparsed, predicate);
    }

    #[test]
    fn parsing_any_text_never_panics(text in any::<String>()) {
        let _ = Predicate::parse(&text);
    }

    #[test]
    fn parsing_near_misses_never_panics(text in "[a-z0-9 ='`\"()<>!,.\\-@#;\\\\]{0,20}") {
        if let Ok(p) = Predicate::parse(&text) {
            let sql = p.to_sql();
            prop_assert_eq!(Predicate::parse(&sql).ok(), Some(p), "{}", sql);
        }
    }
}
