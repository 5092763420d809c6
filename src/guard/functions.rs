//! Which function names a statement may call: an allowlist of MariaDB 10.11
//! built-ins (anything else, e.g. a stored function of the shop database, is
//! refused) minus the built-ins that sleep, lock, read files or run programs.
//!
//! Why an allowlist: an unqualified call to a stored function runs its body
//! with the backend account's rights, outside the guard (no tenant scope, no
//! write rules). MariaDB resolves an unquoted name to a built-in first, so a
//! name on this list can never reach a stored function; every name here is
//! checked against a real MariaDB by tests/functions.rs.

/// Built-in functions the bot may call, upper case, sorted (binary search).
///
/// Left out on purpose: file, lock, sleep and program functions (see
/// [`DENIED`]); account and connection internals (CURRENT_USER,
/// SESSION_USER, SYSTEM_USER, CURRENT_ROLE, CONNECTION_ID, PASSWORD, ...);
/// sequence functions with side effects (NEXTVAL, SETVAL, LASTVAL);
/// encryption/compression, dynamic columns, XML, GIS and replication
/// functions. DATABASE()/SCHEMA() and VERSION() are allowed: drivers and
/// clients ask for them and they name only what the handshake already tells.
/// USER() is allowed because the mariadb CLI's `status` command asks for it;
/// it names the backend account, which grants the bot nothing.
/// CAST, CONVERT, EXTRACT, SUBSTRING, TRIM, POSITION, CEIL/FLOOR, OVERLAY,
/// CASE and MATCH ... AGAINST are syntax in sqlparser (not `Expr::Function`)
/// and never reach this list.
pub(super) const ALLOWED: &[&str] = &[
    "ABS",
    "ACOS",
    "ADDDATE",
    "ADDTIME",
    "ADD_MONTHS",
    "ASCII",
    "ASIN",
    "ATAN",
    "ATAN2",
    "AVG",
    "BIN",
    "BIT_AND",
    "BIT_COUNT",
    "BIT_LENGTH",
    "BIT_OR",
    "BIT_XOR",
    "CEIL",
    "CEILING",
    "CHAR",
    "CHARACTER_LENGTH",
    "CHAR_LENGTH",
    "CHR",
    "COALESCE",
    "CONCAT",
    "CONCAT_WS",
    "CONV",
    "CONVERT_TZ",
    "COS",
    "COT",
    "COUNT",
    "CRC32",
    "CUME_DIST",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURTIME",
    "DATABASE",
    "DATE",
    "DATEDIFF",
    "DATE_ADD",
    "DATE_FORMAT",
    "DATE_SUB",
    "DAY",
    "DAYNAME",
    "DAYOFMONTH",
    "DAYOFWEEK",
    "DAYOFYEAR",
    "DEGREES",
    "DENSE_RANK",
    "ELT",
    "EXP",
    "FIELD",
    "FIND_IN_SET",
    "FIRST_VALUE",
    "FLOOR",
    "FORMAT",
    "FROM_DAYS",
    "FROM_UNIXTIME",
    "GREATEST",
    "GROUP_CONCAT",
    "HEX",
    "HOUR",
    "IF",
    "IFNULL",
    "INSERT",
    "INSTR",
    "ISNULL",
    "JSON_ARRAY",
    "JSON_ARRAYAGG",
    "JSON_COMPACT",
    "JSON_CONTAINS",
    "JSON_CONTAINS_PATH",
    "JSON_DEPTH",
    "JSON_DETAILED",
    "JSON_EXISTS",
    "JSON_EXTRACT",
    "JSON_KEYS",
    "JSON_LENGTH",
    "JSON_LOOSE",
    "JSON_OBJECT",
    "JSON_OBJECTAGG",
    "JSON_QUERY",
    "JSON_QUOTE",
    "JSON_SEARCH",
    "JSON_TYPE",
    "JSON_UNQUOTE",
    "JSON_VALID",
    "JSON_VALUE",
    "LAG",
    "LAST_DAY",
    "LAST_INSERT_ID",
    "LAST_VALUE",
    "LCASE",
    "LEAD",
    "LEAST",
    "LEFT",
    "LENGTH",
    "LN",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "LOCATE",
    "LOG",
    "LOG10",
    "LOG2",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MAKEDATE",
    "MAKETIME",
    "MAX",
    "MD5",
    "MEDIAN",
    "MICROSECOND",
    "MID",
    "MIN",
    "MINUTE",
    "MOD",
    "MONTH",
    "MONTHNAME",
    "NOW",
    "NTH_VALUE",
    "NTILE",
    "NULLIF",
    "NVL",
    "NVL2",
    "OCT",
    "OCTET_LENGTH",
    "ORD",
    "PERCENTILE_CONT",
    "PERCENTILE_DISC",
    "PERCENT_RANK",
    "PERIOD_ADD",
    "PERIOD_DIFF",
    "PI",
    "POW",
    "POWER",
    "QUARTER",
    "QUOTE",
    "RADIANS",
    "RAND",
    "RANK",
    "REGEXP_INSTR",
    "REGEXP_REPLACE",
    "REGEXP_SUBSTR",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "ROUND",
    "ROW_COUNT",
    "ROW_NUMBER",
    "RPAD",
    "RTRIM",
    "SCHEMA",
    "SECOND",
    "SEC_TO_TIME",
    "SHA1",
    "SHA2",
    "SIGN",
    "SIN",
    "SOUNDEX",
    "SPACE",
    "SQRT",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "STRCMP",
    "STR_TO_DATE",
    "SUBDATE",
    "SUBSTRING_INDEX",
    "SUBTIME",
    "SUM",
    "TAN",
    "TIME",
    "TIMEDIFF",
    "TIMESTAMP",
    "TIMESTAMPADD",
    "TIMESTAMPDIFF",
    "TIME_FORMAT",
    "TIME_TO_SEC",
    "TO_DAYS",
    "TO_SECONDS",
    "TRUNCATE",
    "UCASE",
    "UNHEX",
    "UNIX_TIMESTAMP",
    "UPPER",
    "USER",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "UUID",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "VERSION",
    "WEEK",
    "WEEKDAY",
    "WEEKOFYEAR",
    "YEAR",
    "YEARWEEK",
];

/// Built-ins that sleep, hold locks, wait on replication, read server files
/// or run programs (DESIGN.md "Dangerous functions"). None is on
/// [`ALLOWED`]; they are named so the denial can say why.
pub(super) const DENIED: &[&str] = &[
    "BENCHMARK",
    "GET_LOCK",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "LOAD_FILE",
    "MASTER_GTID_WAIT",
    "MASTER_POS_WAIT",
    "RELEASE_ALL_LOCKS",
    "RELEASE_LOCK",
    "SLEEP",
    "SYS_EVAL",
    "SYS_EXEC",
];

/// Longest name on either list, plus room: longer names are on neither.
const MAX_NAME: usize = 32;

/// What the guard does with a call to the unqualified function `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Allowed,
    /// A built-in on the dangerous list.
    Dangerous,
    /// Not a built-in the bot may call (a stored function, a UDF, or a
    /// built-in left off the list).
    NotAllowed,
}

/// Looks `name` up case-insensitively, without allocating: the name is
/// upper-cased into a stack buffer and binary-searched.
pub(super) fn verdict(name: &str) -> Verdict {
    let bytes = name.as_bytes();
    if bytes.len() > MAX_NAME || !bytes.is_ascii() {
        return Verdict::NotAllowed;
    }
    let mut buf = [0u8; MAX_NAME];
    let upper = &mut buf[..bytes.len()];
    upper.copy_from_slice(bytes);
    upper.make_ascii_uppercase();
    // ASCII in, ASCII out: always valid UTF-8.
    let Ok(upper) = std::str::from_utf8(upper) else {
        return Verdict::NotAllowed;
    };
    if ALLOWED.binary_search(&upper).is_ok() {
        Verdict::Allowed
    } else if DENIED.binary_search(&upper).is_ok() {
        Verdict::Dangerous
    } else {
        Verdict::NotAllowed
    }
}

/// The allowlist, for tests that check it against a real MariaDB.
pub fn allowed_functions() -> &'static [&'static str] {
    ALLOWED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_unique_upper_case_and_disjoint() {
        for list in [ALLOWED, DENIED] {
            for pair in list.windows(2) {
                assert!(pair[0] < pair[1], "{} before {}", pair[0], pair[1]);
            }
            for name in list {
                assert!(name.len() <= MAX_NAME, "{name}");
                assert_eq!(*name, name.to_ascii_uppercase(), "{name}");
            }
        }
        for name in DENIED {
            assert!(ALLOWED.binary_search(name).is_err(), "{name} on both lists");
        }
    }

    #[test]
    fn lookup_ignores_case_and_refuses_everything_else() {
        assert_eq!(verdict("concat_ws"), Verdict::Allowed);
        assert_eq!(verdict("Concat_Ws"), Verdict::Allowed);
        assert_eq!(verdict("CONCAT_WS"), Verdict::Allowed);
        assert_eq!(verdict("concat_x"), Verdict::NotAllowed);
        assert_eq!(verdict("concat_"), Verdict::NotAllowed);
        assert_eq!(verdict("sLeEp"), Verdict::Dangerous);
        assert_eq!(verdict("current_user"), Verdict::NotAllowed);
        assert_eq!(verdict("nextval"), Verdict::NotAllowed);
        assert_eq!(verdict(""), Verdict::NotAllowed);
        assert_eq!(verdict(&"A".repeat(MAX_NAME + 1)), Verdict::NotAllowed);
        // Unicode case folding must not turn a name into an allowed one.
        assert_eq!(verdict("ſum"), Verdict::NotAllowed);
        assert_eq!(verdict("NOW\u{0}"), Verdict::NotAllowed);
    }
}
