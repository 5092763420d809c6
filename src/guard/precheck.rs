//! Checks on the raw text and on its tokens, before the parser builds an AST.
//!
//! Owns: the length cap, executable comments and optimizer hints, non-ASCII
//! whitespace, empty text, operators and literals that sqlparser and MariaDB
//! read differently (PARSER-DIFFERENTIALS.md §1, §4, §5, §6), and the token
//! budget that keeps parsing, visiting and dropping the AST within a bounded
//! stack (§7). Does not own: what the statement is (see `classify`).

use sqlparser::dialect::MySqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::{Denial, Rule, StatementKind};

/// Longest statement text accepted. A chat bot's queries are < 4 KiB; 64 KiB is
/// generous, and bounds parse time and AST size (PARSER-DIFFERENTIALS §7).
pub const MAX_STATEMENT_BYTES: usize = 64 * 1024;

/// Most operator tokens (`+`, `=`, `AND`, `IS`, `UNION`, ...) in one statement.
/// sqlparser builds operator chains as left-deep trees without touching its
/// recursion counter, so the number of operators bounds the depth of the
/// tree, and with it the stack used to visit, compare, print and drop it.
/// Measured: a 1,000-term `+` chain overflows a 2 MiB stack in a debug build;
/// 850 does not. 256 leaves room for nesting on top, and is far beyond what
/// the bot sends (its largest query has fewer than 20).
pub const MAX_OPERATOR_TOKENS: usize = 256;

/// Deepest nesting of `(`, `[` and `{`. The parser's recursion limit stops
/// nesting at about half its value already; this is the cheaper, earlier cap.
pub const MAX_NESTING: usize = 32;

fn deny(rule: Rule, message: impl Into<String>, hint: &str) -> Denial {
    Denial::new(
        rule,
        StatementKind::Unknown,
        message,
        Some(hint.to_string()),
    )
}

/// Checks on the text as bytes and characters: cheap, and independent of how
/// any parser tokenizes it.
pub(super) fn check_text(sql: &str) -> Result<(), Denial> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(deny(
            Rule::StatementTooLong,
            format!(
                "statement of {} bytes is longer than the limit of {MAX_STATEMENT_BYTES} bytes",
                sql.len()
            ),
            "send one short statement at a time",
        ));
    }
    check_comments_and_whitespace(sql)
}

/// The checks of [`check_text`] other than length; also run on the text the
/// guard serializes, which may be longer than the client's.
pub(super) fn check_comments_and_whitespace(sql: &str) -> Result<(), Denial> {
    check_comments_and_hints(sql)?;
    check_whitespace(sql)
}

/// `/*!`, `/*M!` and `/*m!` are code to MariaDB and not (or not the same code)
/// to sqlparser (PARSER-DIFFERENTIALS §1); `/*+` is an optimizer hint that
/// sqlparser re-emits verbatim. Scanned on raw bytes, inside literals too:
/// refusing `'/*!'` in a string is a price worth paying for a scan that cannot
/// be confused about where a literal starts.
fn check_comments_and_hints(sql: &str) -> Result<(), Denial> {
    let bytes = sql.as_bytes();
    for (i, window) in bytes.windows(3).enumerate() {
        if window[0] != b'/' || window[1] != b'*' {
            continue;
        }
        let executable = window[2] == b'!'
            || ((window[2] == b'M' || window[2] == b'm') && bytes.get(i + 3) == Some(&b'!'));
        if executable {
            return Err(deny(
                Rule::ExecutableComment,
                "executable comments (/*! ... */, /*M! ... */) are not allowed",
                "write the SQL without version comments",
            ));
        }
        if window[2] == b'+' {
            return Err(deny(
                Rule::OptimizerHint,
                "optimizer hints (/*+ ... */) are not allowed",
                "remove the /*+ ... */ hint",
            ));
        }
    }
    Ok(())
}

fn is_unicode_space(c: char) -> bool {
    c.is_whitespace() && !c.is_ascii()
}

/// Where the scanner is, in MariaDB's default lexing (sql_mode is pinned
/// without ANSI_QUOTES and NO_BACKSLASH_ESCAPES).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    /// Inside a '...' or "..." literal closed by this quote.
    Literal(char),
    Backtick,
    LineComment,
    BlockComment,
}

/// sqlparser treats any `char::is_whitespace` as whitespace (so `--\u{A0}`
/// starts a comment for it) while MariaDB knows only ASCII whitespace
/// (PARSER-DIFFERENTIALS §6). Non-ASCII whitespace is refused everywhere but
/// inside string literals, and `--` followed by it is refused even there.
fn check_whitespace(sql: &str) -> Result<(), Denial> {
    let refuse = || {
        deny(
            Rule::NonAsciiWhitespace,
            "non-ASCII whitespace outside a string literal is not allowed",
            "use plain ASCII spaces, tabs and newlines between SQL words",
        )
    };
    let mut chars = sql.chars().peekable();
    let mut state = Lex::Code;
    let mut previous = '\0';
    let mut before_previous = '\0';
    while let Some(c) = chars.next() {
        if is_unicode_space(c) && previous == '-' && before_previous == '-' {
            return Err(refuse());
        }
        if is_unicode_space(c) && !matches!(state, Lex::Literal(_)) {
            return Err(refuse());
        }
        let next = chars.peek().copied();
        state = match state {
            Lex::Code => match c {
                '\'' | '"' => Lex::Literal(c),
                '`' => Lex::Backtick,
                '#' => Lex::LineComment,
                '-' if next == Some('-') => {
                    // MariaDB: `--` starts a comment only before whitespace or
                    // a control character; either way the rest is scanned.
                    Lex::LineComment
                }
                '/' if next == Some('*') => {
                    chars.next();
                    Lex::BlockComment
                }
                _ => Lex::Code,
            },
            Lex::Literal(quote) => match c {
                '\\' => {
                    // The escaped character cannot end the literal.
                    chars.next();
                    Lex::Literal(quote)
                }
                c if c == quote => Lex::Code,
                _ => Lex::Literal(quote),
            },
            Lex::Backtick => {
                if c == '`' {
                    Lex::Code
                } else {
                    Lex::Backtick
                }
            }
            Lex::LineComment => {
                if c == '\n' {
                    Lex::Code
                } else {
                    Lex::LineComment
                }
            }
            Lex::BlockComment => {
                if c == '*' && next == Some('/') {
                    chars.next();
                    Lex::Code
                } else {
                    Lex::BlockComment
                }
            }
        };
        before_previous = previous;
        previous = c;
    }
    Ok(())
}

/// Tokenizes exactly as `Parser::try_with_sql` does with `unescape = false`.
pub(super) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, Denial> {
    Tokenizer::new(&MySqlDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| {
            Denial::new(
                Rule::ParseError,
                StatementKind::Unknown,
                format!("cannot parse the statement: {}", e.to_string().trim()),
                Some(super::PARSE_HINT.to_string()),
            )
        })
}

/// Keywords that continue an expression as an infix or postfix operator (see
/// sqlparser's `Dialect::get_next_precedence_default`), plus set operations,
/// which also build left-deep trees.
const OPERATOR_KEYWORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::XOR,
    Keyword::NOT,
    Keyword::IS,
    Keyword::IN,
    Keyword::BETWEEN,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::RLIKE,
    Keyword::REGEXP,
    Keyword::SIMILAR,
    Keyword::GLOB,
    Keyword::MATCH,
    Keyword::MEMBER,
    Keyword::OVERLAPS,
    Keyword::OPERATOR,
    Keyword::AT,
    Keyword::COLLATE,
    Keyword::DIV,
    Keyword::MOD,
    Keyword::NOTNULL,
    Keyword::ESCAPE,
    Keyword::BINARY,
    Keyword::INTERVAL,
    Keyword::UNION,
    Keyword::EXCEPT,
    Keyword::INTERSECT,
    Keyword::MINUS,
];

/// Checks on the token stream: emptiness, the operator and nesting budget,
/// and tokens whose meaning differs between sqlparser and MariaDB.
pub(super) fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), Denial> {
    let mut significant = 0usize;
    let mut operators = 0usize;
    let mut depth = 0usize;
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) | Token::SemiColon | Token::EOF => continue,
            _ => significant += 1,
        }
        match &t.token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(too_complex(format!(
                        "nesting deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            Token::Word(w) => {
                if OPERATOR_KEYWORDS.contains(&w.keyword) && w.quote_style.is_none() {
                    operators += 1;
                }
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::Comma
            | Token::Period
            | Token::Placeholder(_) => {}
            Token::StringConcat => return Err(ambiguous("||", "use CONCAT(a, b) or OR")),
            Token::Overlap => return Err(ambiguous("&&", "use AND")),
            Token::Caret => return Err(ambiguous("^", "bitwise XOR is not needed here")),
            Token::ExclamationMark | Token::DoubleExclamationMark => {
                return Err(ambiguous("!", "use NOT"));
            }
            Token::Assignment => {
                return Err(Denial::new(
                    Rule::SessionVariable,
                    StatementKind::Unknown,
                    "assigning user variables with := is not allowed",
                    Some("select the value instead of storing it in a variable".to_string()),
                ));
            }
            Token::HexStringLiteral(_) => return Err(hex_literal()),
            Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_) => {
                return Err(ambiguous_literal("this kind of string literal"));
            }
            _ => operators += 1,
        }
        if operators > MAX_OPERATOR_TOKENS {
            return Err(too_complex(format!(
                "more than {MAX_OPERATOR_TOKENS} operators"
            )));
        }
    }
    if significant == 0 {
        return Err(Denial::new(
            Rule::EmptyStatement,
            StatementKind::Unknown,
            "the statement is empty (only whitespace, comments or ';')",
            Some("send one SQL statement".to_string()),
        ));
    }
    Ok(())
}

pub(super) fn too_complex(what: String) -> Denial {
    Denial::new(
        Rule::TooComplex,
        StatementKind::Unknown,
        format!("the statement is too complex: {what}"),
        Some("split it into simpler statements".to_string()),
    )
}

pub(super) fn ambiguous(operator: &str, hint: &str) -> Denial {
    Denial::new(
        Rule::AmbiguousOperator,
        StatementKind::Unknown,
        format!(
            "the operator {operator} is not allowed (MariaDB and sqlguard read it differently)"
        ),
        Some(hint.to_string()),
    )
}

pub(super) fn hex_literal() -> Denial {
    Denial::new(
        Rule::HexLiteral,
        StatementKind::Unknown,
        "hexadecimal literals (0x41, X'41') are not allowed",
        Some("write the value as a quoted string or a decimal number".to_string()),
    )
}

pub(super) fn ambiguous_literal(what: &str) -> Denial {
    Denial::new(
        Rule::AmbiguousLiteral,
        StatementKind::Unknown,
        format!("{what} is not allowed (MariaDB and sqlguard read it differently)"),
        Some("write values as plain 'quoted strings' or decimal numbers".to_string()),
    )
}

/// The first one or two words of the text, upper-cased, naming the statement
/// in messages (`DELETE`, `DROP TABLE`). Never the raw text beyond them.
pub(super) fn leading_words(tokens: &[TokenWithSpan]) -> String {
    const SECOND: &[Keyword] = &[
        Keyword::TABLE,
        Keyword::TABLES,
        Keyword::DATABASE,
        Keyword::SCHEMA,
        Keyword::VIEW,
        Keyword::INDEX,
        Keyword::USER,
        Keyword::ROLE,
        Keyword::PROCEDURE,
        Keyword::FUNCTION,
        Keyword::TRIGGER,
        Keyword::DATA,
        Keyword::IMMEDIATE,
        Keyword::GLOBAL,
        Keyword::STATEMENT,
        Keyword::TRANSACTION,
        Keyword::SEQUENCE,
        Keyword::EVENT,
    ];
    let mut words = tokens.iter().filter_map(|t| match &t.token {
        Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab) => None,
        Token::Whitespace(_) => None,
        other => Some(other),
    });
    let mut label = match words.next() {
        Some(Token::Word(w)) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        _ => return "this statement".to_string(),
    };
    if let Some(Token::Word(w)) = words.next() {
        if w.quote_style.is_none() && SECOND.contains(&w.keyword) {
            label.push(' ');
            label.push_str(&w.value.to_ascii_uppercase());
        }
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn text_rule(sql: &str) -> Option<Rule> {
        check_text(sql).err().map(|d| d.rule)
    }

    #[test]
    fn executable_comments_and_hints() {
        assert_eq!(
            text_rule("SELECT /*!999999 1 */ 2"),
            Some(Rule::ExecutableComment)
        );
        assert_eq!(
            text_rule("/*M! DROP TABLE products */"),
            Some(Rule::ExecutableComment)
        );
        assert_eq!(
            text_rule("SELECT 1 /*m!100000 , 2 */"),
            Some(Rule::ExecutableComment)
        );
        assert_eq!(text_rule("SELECT '/*!'"), Some(Rule::ExecutableComment));
        assert_eq!(
            text_rule("SELECT /*+ MAX_EXECUTION_TIME(1) */ 1"),
            Some(Rule::OptimizerHint)
        );
        assert_eq!(text_rule("SELECT /* plain */ 1 /*M*/"), None);
        assert_eq!(text_rule("SELECT 1 /*"), None);
    }

    #[test]
    fn non_ascii_whitespace() {
        assert_eq!(text_rule("SELECT 'a\u{a0}b'"), None);
        assert_eq!(text_rule("SELECT \"a\u{3000}b\""), None);
        assert_eq!(text_rule("SELECT 'it\\'s\u{a0}'"), None);
        assert_eq!(text_rule("SELECT\u{a0}1"), Some(Rule::NonAsciiWhitespace));
        assert_eq!(
            text_rule("SELECT 1 --\u{a0}x"),
            Some(Rule::NonAsciiWhitespace)
        );
        assert_eq!(
            text_rule("SELECT '--\u{3000}'"),
            Some(Rule::NonAsciiWhitespace)
        );
        assert_eq!(
            text_rule("SELECT `a\u{2003}b`"),
            Some(Rule::NonAsciiWhitespace)
        );
        assert_eq!(
            text_rule("SELECT 1 # x\u{85}"),
            Some(Rule::NonAsciiWhitespace)
        );
        assert_eq!(
            text_rule("SELECT 1 /* \u{2028} */"),
            Some(Rule::NonAsciiWhitespace)
        );
        assert_eq!(text_rule("SELECT 'a' -- it's\n, 'b\u{a0}'"), None);
        assert_eq!(text_rule("SELECT 'café', `prénom`"), None);
    }

    #[test]
    fn length_cap() {
        let ok = format!("SELECT '{}'", "a".repeat(MAX_STATEMENT_BYTES - 9));
        assert_eq!(ok.len(), MAX_STATEMENT_BYTES);
        assert_eq!(text_rule(&ok), None);
        let long = format!("SELECT '{}'", "a".repeat(MAX_STATEMENT_BYTES - 8));
        assert_eq!(text_rule(&long), Some(Rule::StatementTooLong));
    }

    #[test]
    fn leading_words_name_the_statement() {
        let label = |sql: &str| leading_words(&tokenize(sql).unwrap_or_default());
        assert_eq!(label("dElEtE from x"), "DELETE");
        assert_eq!(label("\tDROP\nTABLE x"), "DROP TABLE");
        assert_eq!(label("/* c */ execute immediate 'x'"), "EXECUTE IMMEDIATE");
        assert_eq!(label("`x`"), "this statement");
    }
}
