//! Every case of the golden corpus repeated as a prepared statement: the
//! literals compared with or written to columns become `?` and are bound at
//! execute time. The guard must reach the same verdict either way (checked
//! at prepare time by `check_prepared`, at execute time by `check_bound`):
//! a rule on a literal cannot be escaped by binding the value instead.

use std::ops::ControlFlow;
use std::path::Path;

use sqlguard::guard::{self, BoundValue, Decision, SessionContext, check_bound};
use sqlguard::policy::Policy;
use sqlguard::policy_tests::{Expected, TestFile};
use sqlparser::ast::{Expr, InTarget, SetExpr, Statement, Value, VisitMut, VisitorMut};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

/// Replaces literals in typed positions by `?`, remembering them with
/// their position in the original text.
#[derive(Default)]
struct Templater {
    /// (start, end) of the literal in the original text, and its value.
    bound: Vec<(((u64, u64), (u64, u64)), Value)>,
}

impl Templater {
    fn take(&mut self, expr: &mut Expr) {
        if let Expr::Value(v) = expr {
            let literal = match &v.value {
                // A literal holding comment syntax is refused on the raw text
                // (a bound value is data, not text): tested elsewhere.
                Value::SingleQuotedString(s) if !s.contains('\\') && !s.contains("/*") => true,
                Value::Number(..) => true,
                _ => false,
            };
            if literal {
                let at = (
                    (v.span.start.line, v.span.start.column),
                    (v.span.end.line, v.span.end.column),
                );
                self.bound.push((at, v.value.clone()));
                v.value = Value::Placeholder("?".into());
            }
        }
    }
}

impl VisitorMut for Templater {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::BinaryOp { left, right, .. } => {
                if matches!(
                    left.as_ref(),
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                ) {
                    self.take(right);
                }
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                ..
            } if matches!(
                expr.as_ref(),
                Expr::Identifier(_) | Expr::CompoundIdentifier(_)
            ) =>
            {
                for item in list {
                    self.take(item);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<()> {
        match statement {
            Statement::Insert(insert) => {
                if let Some(SetExpr::Values(values)) =
                    insert.source.as_deref_mut().map(|q| q.body.as_mut())
                {
                    for row in &mut values.rows {
                        for value in &mut row.content {
                            self.take(value);
                        }
                    }
                }
            }
            Statement::Update(update) => {
                for assignment in &mut update.assignments {
                    self.take(&mut assignment.value);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Byte offset of a 1-based (line, column) position, columns counted in chars.
fn offset(text: &str, (line, column): (u64, u64)) -> usize {
    let mut at = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            return at
                + l.char_indices()
                    .nth(column as usize - 1)
                    .map_or(l.len(), |(b, _)| b);
        }
        at += l.len();
    }
    text.len()
}

/// The client's own text with the literals cut out: comments, operators and
/// spacing stay exactly as sent.
fn template_of(sql: &str, spans: &[((u64, u64), (u64, u64))]) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (start, end) in spans {
        let (a, b) = (offset(sql, *start), offset(sql, *end));
        out.push_str(&sql[last..a]);
        out.push('?');
        last = b;
    }
    out.push_str(&sql[last..]);
    out
}

fn bound_value(value: &Value) -> BoundValue<'_> {
    match value {
        Value::SingleQuotedString(s) => BoundValue::Bytes(s.as_bytes()),
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => BoundValue::Int(i),
            Err(_) => BoundValue::Bytes(n.as_bytes()),
        },
        _ => BoundValue::Null,
    }
}

/// allow, or the rule that refused.
fn verdict_of_text(sql: &str, session: &SessionContext<'_>) -> Result<(), String> {
    match guard::check(sql, session) {
        Decision::Allow { .. } | Decision::LocalOk { .. } => Ok(()),
        Decision::Deny(d) => Err(d.rule.name().to_string()),
    }
}

fn verdict_prepared(
    template: &str,
    bound: &[Value],
    session: &SessionContext<'_>,
) -> Result<(), String> {
    match guard::check_prepared(template, session) {
        Decision::Allow { params, .. } => {
            assert_eq!(params.len(), bound.len(), "placeholder count of {template}");
            for (rule, value) in params.iter().zip(bound) {
                check_bound(rule, bound_value(value), session.tenant_id)
                    .map_err(|d| d.rule.name().to_string())?;
            }
            Ok(())
        }
        Decision::LocalOk { .. } => Ok(()),
        Decision::Deny(d) => Err(d.rule.name().to_string()),
    }
}

#[test]
fn the_corpus_gives_the_same_verdicts_with_bound_parameters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = TestFile::load(&root.join("tests/golden/clawdbot.toml")).expect("corpus");
    let policy = Policy::load(&root.join("policies/clawdbot.toml")).expect("policy");
    let (mut compared, mut mismatches) = (0, Vec::new());
    for case in &file.cases {
        if matches!(case.expected, Expected::Local) {
            continue;
        }
        let options = ParserOptions::new().with_unescape(false);
        let Ok(mut statements) = Parser::new(&MySqlDialect {})
            .with_options(options)
            .try_with_sql(&case.sql)
            .and_then(|mut p| p.parse_statements())
        else {
            continue;
        };
        if statements.len() != 1 {
            continue;
        }
        let mut statement = statements.remove(0);
        // Spans are only as good as the text: skip the odd multi-line case.
        if case.sql.contains('\n') {
            continue;
        }
        let mut templater = Templater::default();
        let _ = statement.visit(&mut templater);
        if templater.bound.is_empty() {
            continue;
        }
        templater.bound.sort_by_key(|(at, _)| *at);
        let spans: Vec<_> = templater.bound.iter().map(|(at, _)| *at).collect();
        // Each span must cover exactly its literal ('a' 'b' is one value
        // written as two literals): otherwise the template is not the text.
        let exact = templater.bound.iter().all(|((start, end), v)| {
            let (a, b) = (offset(&case.sql, *start), offset(&case.sql, *end));
            case.sql.get(a..b) == Some(v.to_string().as_str())
        });
        if !exact {
            continue;
        }
        let bound: Vec<Value> = templater.bound.into_iter().map(|(_, v)| v).collect();
        let template = template_of(&case.sql, &spans);
        let session = SessionContext {
            user: "clawdbot",
            tenant_id: case.tenant,
            database: "shop",
            policy: &policy,
        };
        let text = verdict_of_text(&case.sql, &session);
        let prepared = verdict_prepared(&template, &bound, &session);
        compared += 1;
        let agree = match (&text, &prepared) {
            (Ok(()), Ok(())) => true,
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if !agree {
            mismatches.push(format!(
                "case {} (line {}): {}\n  as text: {text:?}\n  prepared: {template} with {bound:?}: {prepared:?}",
                case.number,
                case.line,
                case.sql
            ));
        }
    }
    assert!(
        compared >= 100,
        "only {compared} corpus cases have literals to bind"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
