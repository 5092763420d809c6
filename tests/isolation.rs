//! Tenant isolation, checked against the oracle of DESIGN.md ("What correct
//! means"): for an allowed SELECT `S` and tenant `T`, the rewritten `S` on the
//! full database returns exactly what the original `S` returns on a copy that
//! holds only `T`'s rows. Writes as tenant 1 never change another tenant's
//! rows, and leave tenant 1's rows as the same statement leaves the copy.
//!
//! - `corpus_selects_match_the_tenant_copy`: tests/data/isolation_selects.sql,
//!   as tenant 1 and tenant 2.
//! - `corpus_writes_stay_in_the_tenant`: tests/data/isolation_writes.sql.
//! - `generated_selects_match_the_tenant_copy` and
//!   `generated_updates_stay_in_the_tenant`: random statements over the fixture
//!   schema. Seed: `SQLGUARD_GEN_SEED` (default fixed), count:
//!   `SQLGUARD_GEN_COUNT` (default 400 SELECTs, a third as many UPDATEs),
//!   bounded by `SQLGUARD_GEN_SECS` (default 60) of wall clock.
//!
//! See tests/common/isolation.rs for the harness.

mod common;

use std::time::{Duration, Instant};

use common::isolation::*;
use common::proxy::start_proxy;
use common::proxy::test_config;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Values that exist only in tenant 2's rows: none may reach tenant 1.
const TENANT2_MARKERS: &[&str] = &[
    "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2",
    "8f14e45f-ceea-467f-a8f2-1e2b5c3d2",
    "+212600112233",
    "+212644556677",
    "Atlas Souk",
    "atlas-souk",
    "Beni Ouarain",
];

fn markers_in(rows: &Rows) -> Vec<String> {
    let mut found = Vec::new();
    for row in rows {
        for cell in row.iter().flatten() {
            let text = String::from_utf8_lossy(cell);
            for m in TENANT2_MARKERS {
                if text.contains(m) && !found.contains(&m.to_string()) {
                    found.push(m.to_string());
                }
            }
        }
    }
    found
}

fn report_failures(what: &str, failures: &[String]) {
    if failures.is_empty() {
        return;
    }
    let shown: Vec<&String> = failures.iter().take(25).collect();
    panic!(
        "{what}: {} failure(s){}:\n\n{}",
        failures.len(),
        if failures.len() > shown.len() {
            format!(" (first {} shown)", shown.len())
        } else {
            String::new()
        },
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// The gist of a denial message (`sqlguard: <what> ...`): its first words.
fn denial_rule(message: &str) -> String {
    let text = message.trim_start_matches("sqlguard:").trim();
    text.split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ------------------------------------------------------------------ corpus

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_selects_match_the_tenant_copy() {
    let env = read_env();
    let proxy = start_proxy(test_config(env.full)).await;
    let mut oracle = SelectOracle::new(&proxy, &[(1, env.copy[0]), (2, env.copy[1])]).await;
    let statements = corpus("isolation_selects.sql");
    assert!(
        statements.len() >= 60,
        "the corpus should have at least 60 SELECTs"
    );

    let mut failures = Vec::new();
    let mut denials = Vec::new();
    let mut tallies = [Tally::default(), Tally::default()];
    for (i, sql) in statements.iter().enumerate() {
        for tenant in [1u64, 2] {
            let (verdict, proxy_rows) = oracle.check(tenant, sql).await;
            tallies[tenant as usize - 1].add(&verdict);
            if tenant == 1 {
                if let Some(rows) = &proxy_rows {
                    let found = markers_in(rows);
                    if !found.is_empty() {
                        failures.push(format!(
                            "[statement {i}] {sql}\n  LEAK: tenant 1 received tenant 2's values {found:?}"
                        ));
                    }
                }
            }
            if let Verdict::Denied((_, message)) = &verdict {
                if tenant == 1 {
                    denials.push(format!("  [statement {i}] {sql}\n    {message}"));
                }
            }
            if let Verdict::Failure(message) = verdict {
                failures.push(format!("[statement {i}] {sql}\n  {message}"));
            }
        }
    }
    if !denials.is_empty() {
        println!("denied for tenant 1:\n{}", denials.join("\n"));
    }
    println!(
        "isolation corpus: {} SELECTs\n  tenant 1: {}\n  tenant 2: {}",
        statements.len(),
        tallies[0],
        tallies[1]
    );
    report_failures("corpus SELECTs", &failures);
}

/// The harness itself: with sqlguard in front of a tenant's copy, the copy
/// holds nothing to leak, so every allowed statement must agree with running
/// it directly on that copy. A failure here is a bug in the oracle (or in
/// sqlguard's result forwarding), not a leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_agrees_with_itself_on_a_tenant_copy() {
    let env = read_env();
    let mut failures = Vec::new();
    for (tenant, port) in [(1u64, env.copy[0]), (2, env.copy[1])] {
        let proxy = start_proxy(test_config(port)).await;
        let mut oracle = SelectOracle::new(&proxy, &[(tenant, port)]).await;
        let mut tally = Tally::default();
        for (i, sql) in corpus("isolation_selects.sql").iter().enumerate() {
            let (verdict, _) = oracle.check(tenant, sql).await;
            tally.add(&verdict);
            if let Verdict::Failure(message) = verdict {
                failures.push(format!("[statement {i}] {sql}\n  {message}"));
            }
        }
        println!("oracle self-check, tenant {tenant}: {tally}");
    }
    report_failures(
        "oracle self-check (proxy in front of the tenant's copy)",
        &failures,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_writes_stay_in_the_tenant() {
    let _lock = WRITE_LOCK.lock().await;
    let mut oracle = WriteOracle::new(write_env()).await;
    let statements = corpus("isolation_writes.sql");
    let (mut ok, mut denied) = (0, 0);
    let mut failures = Vec::new();
    let mut refused = Vec::new();
    for (i, sql) in statements.iter().enumerate() {
        match oracle.check(sql).await {
            WriteVerdict::Ok { .. } => ok += 1,
            WriteVerdict::Denied((_, message)) => {
                denied += 1;
                println!("  denied [statement {i}] {sql}\n    {message}");
            }
            WriteVerdict::RefusedByBackend { proxy, copy } => refused.push(format!(
                "  [statement {i}] {sql}\n    through sqlguard: {proxy:?}; on the copy: {copy} rows\n    rewritten: {}",
                oracle.rewritten(sql)
            )),
            WriteVerdict::Failure(message) => {
                failures.push(format!("[statement {i}] {sql}\n  {message}"))
            }
        }
    }
    println!(
        "isolation writes: {} statements: {ok} allowed and consistent, {denied} denied, \
         {} refused by the backend after the rewrite, {} failed",
        statements.len(),
        refused.len(),
        failures.len()
    );
    if !refused.is_empty() {
        println!(
            "refused by the backend (not a leak):\n{}",
            refused.join("\n")
        );
    }
    report_failures("corpus writes", &failures);
}

// ------------------------------------------------------------------ generator

/// A column of the model: name, literals to compare it with, and a join tag
/// (columns with the same tag hold the same kind of key).
#[derive(Clone, Debug)]
struct Col {
    name: String,
    lits: Vec<String>,
    link: Option<&'static str>,
    numeric: bool,
    /// Holds UUIDs (MariaDB's UUID type: comparing text with it is an error).
    uuid: bool,
}

impl Col {
    /// Whether comparing the two cannot make an UPDATE fail on a conversion
    /// (strict mode turns truncation warnings into errors, depending on the plan).
    fn comparable(&self, other: &Col) -> bool {
        self.numeric == other.numeric && self.uuid == other.uuid
    }
}

#[derive(Clone, Debug)]
struct Table {
    name: &'static str,
    cols: Vec<Col>,
    /// Only read alone, with a filter (500 rows per tenant).
    big: bool,
}

fn ints(v: &[i64]) -> Vec<String> {
    v.iter().map(|i| i.to_string()).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| format!("'{s}'")).collect()
}

fn col(name: &str, lits: Vec<String>, link: Option<&'static str>, numeric: bool) -> Col {
    let uuid = lits
        .iter()
        .all(|l| l.len() == 38 && l.matches('-').count() == 4);
    Col {
        name: name.to_string(),
        lits,
        link,
        numeric,
        uuid,
    }
}

/// The fixture schema, minus denied columns (tenants.api_keys, users.email).
fn schema() -> Vec<Table> {
    let tenant = || col("tenant_id", ints(&[1, 2]), Some("tenant"), true);
    let customer_ids = ints(&[1, 2, 3, 5, 6, 8, 10]);
    let conv_ids = ints(&[1, 2, 4, 5, 7, 8]);
    let t = |name: &'static str, cols: Vec<Col>| Table {
        name,
        cols,
        big: false,
    };
    vec![
        t(
            "tenants",
            vec![
                col("id", ints(&[1, 2]), Some("tenant"), true),
                col(
                    "name",
                    strs(&["Demo Store Maroc", "Atlas Souk"]),
                    None,
                    false,
                ),
                col(
                    "slug",
                    strs(&["atlas-souk", "demo-store-maroc"]),
                    None,
                    false,
                ),
                col("status", strs(&["active"]), None, false),
            ],
        ),
        t(
            "users",
            vec![
                col("id", ints(&[1, 3, 4]), None, true),
                tenant(),
                col(
                    "name",
                    strs(&["Rachid Alaoui", "Amine Berrada"]),
                    None,
                    false,
                ),
                col("role", strs(&["admin", "editor"]), None, false),
            ],
        ),
        t(
            "customers",
            vec![
                col("id", customer_ids.clone(), Some("customer"), true),
                tenant(),
                col(
                    "phone",
                    strs(&["+212612345678", "+212600112233", "+212644556677"]),
                    Some("phone"),
                    false,
                ),
                col(
                    "social_handle",
                    strs(&["hamid.tazi", "salma.bennani"]),
                    None,
                    false,
                ),
                col(
                    "platform",
                    strs(&["whatsapp", "instagram", "facebook"]),
                    None,
                    false,
                ),
                col("lifetime_value", ints(&[0, 349, 1450, 3680]), None, true),
                col(
                    "notes",
                    strs(&["Commande pour un riad à Fès."]),
                    None,
                    false,
                ),
            ],
        ),
        t(
            "conversations",
            vec![
                col("id", conv_ids.clone(), Some("conversation"), true),
                tenant(),
                col("customer_id", customer_ids.clone(), Some("customer"), true),
                col("platform", strs(&["whatsapp", "instagram"]), None, false),
                col("status", strs(&["active", "closed"]), None, false),
                col(
                    "ai_sentiment",
                    strs(&["positive", "neutral", "negative"]),
                    None,
                    false,
                ),
            ],
        ),
        t(
            "messages",
            vec![
                col("id", ints(&[1, 4, 9, 10, 15, 18]), None, true),
                col("conversation_id", conv_ids, Some("conversation"), true),
                col("sender", strs(&["customer", "ai", "agent"]), None, false),
                col("type", strs(&["text", "audio", "image"]), None, false),
                col("content", strs(&["Vous livrez à Agadir ?"]), None, false),
            ],
        ),
        t(
            "products",
            vec![
                col(
                    "id",
                    strs(&[
                        "3f2504e0-4f89-41d3-9a0c-0305e82c1001",
                        "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2001",
                        "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2003",
                    ]),
                    None,
                    false,
                ),
                tenant(),
                col(
                    "name",
                    strs(&["Pouf en cuir brodé", "Power Bank 20000 mAh"]),
                    None,
                    false,
                ),
                col("price", ints(&[120, 299, 549, 3500]), None, true),
                col("stock", ints(&[0, 3, 12, 25, 50]), None, true),
                col("status", strs(&["active", "draft"]), None, false),
                col(
                    "category",
                    strs(&["Mode", "Électronique", "Décoration"]),
                    Some("category"),
                    false,
                ),
            ],
        ),
        t(
            "orders",
            vec![
                col(
                    "id",
                    strs(&[
                        "6ec0bd7f-11c0-43da-975e-2a8ad9eb1001",
                        "8f14e45f-ceea-467f-a8f2-1e2b5c3d2002",
                    ]),
                    None,
                    false,
                ),
                tenant(),
                col("customer_id", customer_ids, Some("customer"), true),
                col("total_price", ints(&[120, 299, 748, 1520]), None, true),
                col(
                    "status",
                    strs(&["En attente", "Confirmé", "Livré", "Annulé"]),
                    None,
                    false,
                ),
                col(
                    "customer_phone",
                    strs(&["+212600112233", "+212612345678"]),
                    Some("phone"),
                    false,
                ),
                col(
                    "city",
                    strs(&["Casablanca", "Marrakech", "Fès"]),
                    None,
                    false,
                ),
            ],
        ),
        t(
            "packs",
            vec![
                col("id", ints(&[1, 3]), None, true),
                tenant(),
                col(
                    "name",
                    strs(&["Pack Hammam", "Pack Audio Nomade"]),
                    None,
                    false,
                ),
                col("discount_price", ints(&[270, 449, 4000]), None, true),
            ],
        ),
        t(
            "categories",
            vec![
                col("id", ints(&[1, 4, 5]), None, true),
                tenant(),
                col(
                    "name",
                    strs(&["Mode", "Décoration", "Électronique"]),
                    Some("category"),
                    false,
                ),
                col("slug", strs(&["mode", "cuisine"]), None, false),
            ],
        ),
        t(
            "home_univers",
            vec![
                col("id", ints(&[1, 3]), Some("univers"), true),
                tenant(),
                col("name", strs(&["Tech", "Artisanat"]), None, false),
                col("sort_order", ints(&[1, 2]), None, true),
            ],
        ),
        t(
            "home_collections",
            vec![
                col("id", ints(&[1, 4]), None, true),
                tenant(),
                col("univers_id", ints(&[1, 3, 4]), Some("univers"), true),
                col("name", strs(&["Petits prix", "Idées cadeaux"]), None, false),
                col("sort_order", ints(&[1, 2, 3]), None, true),
            ],
        ),
        t(
            "type_probe",
            vec![
                col("id", ints(&[1, 4]), None, true),
                tenant(),
                col("c_int", ints(&[42, 2147483647]), None, true),
                col(
                    "c_varchar",
                    strs(&["Atlas Souk — Fès el-Bali"]),
                    None,
                    false,
                ),
            ],
        ),
        Table {
            name: "bench_points",
            cols: vec![
                col("id", ints(&[2, 7, 100]), None, true),
                tenant(),
                col("k", ints(&[10, 30, 500]), None, true),
            ],
            big: true,
        },
    ]
}

/// A FROM source in scope: its reference name and columns.
#[derive(Clone, Debug)]
struct Source {
    reference: String,
    cols: Vec<Col>,
}

const ALIASES: &[&str] = &[
    "a",
    "b",
    "c",
    "x",
    "y",
    "t1",
    "t2",
    "o",
    "m",
    "p",
    "v",
    "customers",
    "orders",
    "messages",
    "conversations",
    "products",
    "tenants",
];

struct Gen {
    rng: StdRng,
    schema: Vec<Table>,
    /// Names used in the current statement (aliases and table references).
    used: Vec<String>,
    next_derived: usize,
    /// Only type-compatible comparisons between columns (for UPDATEs).
    strict: bool,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            schema: schema(),
            used: Vec::new(),
            next_derived: 0,
            strict: false,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        items.choose(&mut self.rng).expect("non-empty")
    }

    fn table(&mut self, allow_big: bool) -> Table {
        loop {
            let t = self.pick(&self.schema.clone()).clone();
            if allow_big || !t.big {
                return t;
            }
        }
    }

    /// A fresh alias (may be another table's name), or none.
    fn alias_for(&mut self, table: &str) -> Option<String> {
        if !self.used.iter().any(|u| u == table) && self.chance(0.2) {
            self.used.push(table.to_string());
            return None;
        }
        for _ in 0..50 {
            let a = self.pick(ALIASES).to_string();
            if !self.used.contains(&a) && a != table {
                self.used.push(a.clone());
                return Some(a);
            }
        }
        let a = format!("z{}", self.used.len());
        self.used.push(a.clone());
        Some(a)
    }

    /// `table [AS] alias`, sometimes `shop.`-qualified.
    fn table_ref(&mut self, table: &Table) -> (String, Source) {
        let qualified = if self.chance(0.15) {
            format!("shop.{}", table.name)
        } else {
            table.name.to_string()
        };
        match self.alias_for(table.name) {
            None => (
                qualified,
                Source {
                    reference: table.name.to_string(),
                    cols: table.cols.clone(),
                },
            ),
            Some(a) => {
                let kw = if self.chance(0.5) { " AS " } else { " " };
                (
                    format!("{qualified}{kw}{a}"),
                    Source {
                        reference: a,
                        cols: table.cols.clone(),
                    },
                )
            }
        }
    }

    fn literal(&mut self, c: &Col) -> String {
        self.pick(&c.lits).clone()
    }

    fn column_of(&mut self, sources: &[Source]) -> (String, Col) {
        let s = self.pick(sources).clone();
        let c = self.pick(&s.cols).clone();
        (format!("{}.{}", s.reference, c.name), c)
    }

    /// One atomic predicate over `sources` (the innermost scope first).
    fn atom(&mut self, sources: &[Source], depth: usize) -> String {
        let roll = self.rng.gen_range(0..100);
        let has_tenant: Vec<Source> = sources
            .iter()
            .filter(|s| s.cols.iter().any(|c| c.name == "tenant_id"))
            .cloned()
            .collect();
        match roll {
            0..=29 => {
                let (r, c) = self.column_of(sources);
                let lit = self.literal(&c);
                let op = if c.numeric {
                    *self.pick(&["=", "<>", "<", ">", ">=", "<="])
                } else {
                    *self.pick(&["=", "=", "<>", "<"])
                };
                format!("{r} {op} {lit}")
            }
            30..=39 if !has_tenant.is_empty() => {
                let s = self.pick(&has_tenant).reference.clone();
                let t = *self.pick(&["2", "2", "1"]);
                let op = *self.pick(&["=", "=", "<>"]);
                format!("{s}.tenant_id {op} {t}")
            }
            40..=46 => self.pick(&["1 = 1", "1 = 1", "1 = 0", "TRUE"]).to_string(),
            47..=54 => {
                let (r, _) = self.column_of(sources);
                let neg = if self.chance(0.5) { " NOT" } else { "" };
                format!("{r} IS{neg} NULL")
            }
            55..=62 => {
                let (r, c) = self.column_of(sources);
                let a = self.literal(&c);
                let b = self.literal(&c);
                let neg = if self.chance(0.3) { " NOT" } else { "" };
                format!("{r}{neg} IN ({a}, {b})")
            }
            63..=99 if depth < 2 => self.subquery_predicate(sources, depth),
            _ => {
                let (r, c) = self.column_of(sources);
                let lit = self.literal(&c);
                format!("{r} = {lit}")
            }
        }
    }

    /// IN / NOT IN / EXISTS / NOT EXISTS / comparison with a scalar subquery.
    fn subquery_predicate(&mut self, outer: &[Source], depth: usize) -> String {
        let inner_table = self.table(true);
        let (from, inner) = self.table_ref(&inner_table);
        let mut scope = vec![inner.clone()];
        scope.extend_from_slice(outer);
        let filter = if self.chance(0.6) {
            format!(" WHERE {}", self.predicate(&scope, depth + 1))
        } else {
            String::new()
        };
        match self.rng.gen_range(0..4) {
            0 => {
                // IN: prefer columns that share a join tag.
                let (r, c) = self.column_of(outer);
                let same: Vec<Col> = inner
                    .cols
                    .iter()
                    .filter(|ic| ic.link.is_some() && ic.link == c.link)
                    .cloned()
                    .collect();
                let comparable: Vec<Col> = inner
                    .cols
                    .iter()
                    .filter(|ic| ic.comparable(&c))
                    .cloned()
                    .collect();
                let ic = if !same.is_empty() && self.chance(0.8) {
                    self.pick(&same).clone()
                } else if self.strict {
                    if comparable.is_empty() {
                        return format!("EXISTS (SELECT 1 FROM {from}{filter})");
                    }
                    self.pick(&comparable).clone()
                } else {
                    self.pick(&inner.cols).clone()
                };
                let neg = if self.chance(0.3) { " NOT" } else { "" };
                format!(
                    "{r}{neg} IN (SELECT {}.{} FROM {from}{filter})",
                    inner.reference, ic.name
                )
            }
            1 => {
                // Correlated EXISTS on a shared tag when there is one.
                let mut pairs = Vec::new();
                for o in outer {
                    for oc in &o.cols {
                        for ic in &inner.cols {
                            if oc.link.is_some() && oc.link == ic.link {
                                pairs.push(format!(
                                    "{}.{} = {}.{}",
                                    inner.reference, ic.name, o.reference, oc.name
                                ));
                            }
                        }
                    }
                }
                let corr = if !pairs.is_empty() && self.chance(0.8) {
                    Some(self.pick(&pairs).clone())
                } else {
                    None
                };
                let condition = match (corr, filter.is_empty()) {
                    (Some(c), true) => format!(" WHERE {c}"),
                    (Some(c), false) => format!("{filter} AND {c}"),
                    (None, _) => filter,
                };
                let neg = if self.chance(0.4) { "NOT " } else { "" };
                format!("{neg}EXISTS (SELECT 1 FROM {from}{condition})")
            }
            _ => {
                let (r, c) = self.column_of(outer);
                let numeric: Vec<Col> = inner.cols.iter().filter(|c| c.numeric).cloned().collect();
                let agg = if numeric.is_empty() || self.chance(0.5) {
                    "COUNT(*)".to_string()
                } else {
                    let n = self.pick(&numeric).clone();
                    let f = *self.pick(&["MAX", "MIN", "SUM"]);
                    format!("{f}({}.{})", inner.reference, n.name)
                };
                let lhs = if c.numeric { r } else { "1".to_string() };
                let op = *self.pick(&["=", "<", ">", ">="]);
                format!("{lhs} {op} (SELECT {agg} FROM {from}{filter})")
            }
        }
    }

    /// AND/OR chains of atoms, sometimes negated or parenthesized.
    fn predicate(&mut self, sources: &[Source], depth: usize) -> String {
        let n = self.rng.gen_range(1..=if depth == 0 { 4 } else { 2 });
        let mut out = String::new();
        for i in 0..n {
            let mut atom = self.atom(sources, depth);
            if self.chance(0.1) {
                atom = format!("NOT ({atom})");
            }
            if i > 0 {
                out.push_str(if self.chance(0.5) { " OR " } else { " AND " });
            }
            out.push_str(&atom);
        }
        if n > 1 && self.chance(0.3) {
            out = format!("({out})");
        }
        out
    }

    /// A derived table `(SELECT …) AS dN` (or its body, for a CTE): plain
    /// columns of one or two sources, renamed uniquely.
    fn derived_body(&mut self, depth: usize) -> (String, Vec<Col>) {
        let t = self.table(false);
        let (from, s) = self.table_ref(&t);
        let n = self.rng.gen_range(1..=3.min(s.cols.len()));
        let mut picked: Vec<Col> = s.cols.clone();
        picked.shuffle(&mut self.rng);
        picked.truncate(n);
        let items: Vec<String> = picked
            .iter()
            .map(|c| format!("{}.{} AS {}", s.reference, c.name, c.name))
            .collect();
        let filter = if self.chance(0.6) {
            format!(" WHERE {}", self.predicate(&[s.clone()], depth + 1))
        } else {
            String::new()
        };
        (
            format!("SELECT {} FROM {from}{filter}", items.join(", ")),
            picked,
        )
    }

    /// The FROM clause: 1–3 sources, joined on sensible or nonsense keys.
    fn from_clause(&mut self, depth: usize, ctes: &mut Vec<String>) -> (String, Vec<Source>) {
        let n = *self.pick(&[1, 1, 2, 2, 2, 3]);
        let mut sources: Vec<Source> = Vec::new();
        let mut from = String::new();
        for i in 0..n {
            let allow_big = n == 1;
            let roll = self.rng.gen_range(0..100);
            let (text, source) = if roll < 10 && depth < 2 {
                let (body, cols) = self.derived_body(depth);
                self.next_derived += 1;
                let name = format!("d{}", self.next_derived);
                self.used.push(name.clone());
                (
                    format!("({body}) AS {name}"),
                    Source {
                        reference: name,
                        cols,
                    },
                )
            } else if roll < 15 && depth == 0 {
                let (body, cols) = self.derived_body(depth);
                self.next_derived += 1;
                // A CTE, sometimes named like a real table (it shadows it).
                let name = if self.chance(0.1) {
                    let t = self.table(false).name.to_string();
                    if self.used.contains(&t) {
                        format!("w{}", self.next_derived)
                    } else {
                        t
                    }
                } else {
                    format!("w{}", self.next_derived)
                };
                self.used.push(name.clone());
                ctes.push(format!("{name} AS ({body})"));
                (
                    name.clone(),
                    Source {
                        reference: name,
                        cols,
                    },
                )
            } else {
                let t = self.table(allow_big);
                self.table_ref(&t)
            };
            if i == 0 {
                from = text;
            } else if self.chance(0.15) {
                // Comma join; its condition goes into WHERE (or nowhere).
                from = format!("{from}, {text}");
            } else {
                let kind = *self.pick(&[
                    "JOIN",
                    "INNER JOIN",
                    "LEFT JOIN",
                    "LEFT JOIN",
                    "JOIN",
                    "INNER JOIN",
                    "LEFT JOIN",
                    "LEFT JOIN",
                    "JOIN",
                    "RIGHT JOIN",
                ]);
                let on = self.join_condition(&sources, &source);
                from = format!("{from} {kind} {text} ON {on}");
            }
            sources.push(source);
        }
        (from, sources)
    }

    fn join_condition(&mut self, left: &[Source], right: &Source) -> String {
        let mut pairs = Vec::new();
        for l in left {
            for lc in &l.cols {
                for rc in &right.cols {
                    if lc.link.is_some() && lc.link == rc.link {
                        pairs.push(format!(
                            "{}.{} = {}.{}",
                            right.reference, rc.name, l.reference, lc.name
                        ));
                    }
                }
            }
        }
        let mut on = if !pairs.is_empty() && self.chance(0.85) {
            self.pick(&pairs).clone()
        } else {
            // Nonsense: any two columns (comparable ones when strict).
            let l = self.pick(left).clone();
            let lc = self.pick(&l.cols).clone();
            let options: Vec<Col> = right
                .cols
                .iter()
                .filter(|rc| !self.strict || rc.comparable(&lc))
                .cloned()
                .collect();
            let rc = if options.is_empty() {
                self.pick(&right.cols).clone()
            } else {
                self.pick(&options).clone()
            };
            format!(
                "{}.{} = {}.{}",
                right.reference, rc.name, l.reference, lc.name
            )
        };
        if self.chance(0.2) {
            let extra = self.atom(std::slice::from_ref(right), 2);
            on = format!("{on} AND {extra}");
        }
        on
    }

    /// A SELECT; `want` fixes the number of output columns (UNION branches).
    fn select(&mut self, depth: usize, want: Option<usize>) -> (String, usize) {
        let mut ctes = Vec::new();
        let (from, sources) = self.from_clause(depth, &mut ctes);
        let mode = if want.is_some() {
            0
        } else {
            self.rng.gen_range(0..100)
        };
        let mut group = String::new();
        let mut order_all = false;
        let items: Vec<String> = match mode {
            0..=59 => {
                let n = want.unwrap_or_else(|| self.rng.gen_range(1..=4));
                let mut items: Vec<String> = (0..n).map(|_| self.column_of(&sources).0).collect();
                if want.is_none() && self.chance(0.15) {
                    items.push(self.scalar_subquery(&sources, depth));
                }
                order_all = want.is_none() && self.chance(0.12);
                items
            }
            60..=79 => {
                let (g, _) = self.column_of(&sources);
                group = format!(" GROUP BY {g}");
                if self.chance(0.3) {
                    group.push_str(" HAVING COUNT(*) > 1");
                }
                vec![g, "COUNT(*)".to_string()]
            }
            80..=94 => {
                let (r, c) = self.column_of(&sources);
                let mut v = vec!["COUNT(*)".to_string()];
                if c.numeric {
                    v.push(format!("SUM({r})"));
                } else {
                    v.push(format!("MAX({r})"));
                }
                v
            }
            _ => vec!["*".to_string()],
        };
        let filter = if self.chance(0.75) {
            format!(" WHERE {}", self.predicate(&sources, depth))
        } else {
            String::new()
        };
        let with = if ctes.is_empty() {
            String::new()
        } else {
            format!("WITH {} ", ctes.join(", "))
        };
        let count = items.len();
        let mut sql = format!(
            "{with}SELECT {} FROM {from}{filter}{group}",
            items.join(", ")
        );
        if order_all && count > 0 {
            let positions: Vec<String> = (1..=count).map(|i| i.to_string()).collect();
            let limit = self.rng.gen_range(1..=8);
            sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", positions.join(", ")));
        }
        (sql, count)
    }

    fn scalar_subquery(&mut self, outer: &[Source], depth: usize) -> String {
        let t = self.table(true);
        let (from, inner) = self.table_ref(&t);
        let mut pairs = Vec::new();
        for o in outer {
            for oc in &o.cols {
                for ic in &inner.cols {
                    if oc.link.is_some() && oc.link == ic.link {
                        pairs.push(format!(
                            "{}.{} = {}.{}",
                            inner.reference, ic.name, o.reference, oc.name
                        ));
                    }
                }
            }
        }
        let condition = if !pairs.is_empty() && self.chance(0.6) {
            format!(" WHERE {}", self.pick(&pairs).clone())
        } else if self.chance(0.5) {
            format!(" WHERE {}", self.predicate(&[inner.clone()], depth + 1))
        } else {
            String::new()
        };
        format!("(SELECT COUNT(*) FROM {from}{condition})")
    }

    /// A top-level SELECT, sometimes a UNION of two.
    fn top_select(&mut self) -> String {
        self.used.clear();
        self.next_derived = 0;
        if self.chance(0.12) {
            let width = self.rng.gen_range(1..=2);
            let (a, n) = self.select(0, Some(width));
            let (b, _) = self.select(0, Some(n));
            let op = *self.pick(&["UNION", "UNION ALL"]);
            // CTEs are only valid at the start of the whole statement.
            if a.starts_with("WITH") || b.starts_with("WITH") {
                return a;
            }
            format!("{a} {op} {b}")
        } else {
            self.select(0, None).0
        }
    }

    /// A random UPDATE by clawdbot (columns from its policy's update lists).
    fn update(&mut self, i: usize) -> String {
        self.used.clear();
        self.next_derived = 0;
        self.strict = true;
        let targets: &[(&str, &[&str])] = &[
            ("customers", &["phone", "social_handle", "notes"]),
            ("conversations", &["ai_sentiment", "last_message_at"]),
            (
                "orders",
                &[
                    "status",
                    "customer_name",
                    "customer_phone",
                    "address",
                    "city",
                    "total_price",
                ],
            ),
        ];
        let (name, settable) = *self.pick(targets);
        let table = self.schema.iter().find(|t| t.name == name).unwrap().clone();
        let (target, source) = self.table_ref(&table);
        let mut sources = vec![source.clone()];
        let mut from = target;
        if self.chance(0.15) {
            let other = self.table(false);
            let (text, s) = self.table_ref(&other);
            let on = self.join_condition(&sources, &s);
            let kind = *self.pick(&["JOIN", "LEFT JOIN"]);
            from = format!("{from} {kind} {text} ON {on}");
            sources.push(s);
        }
        let column = *self.pick(settable);
        let value = match column {
            "ai_sentiment" => self
                .pick(&["'positive'", "'neutral'", "'negative'"])
                .to_string(),
            "last_message_at" => format!("'2024-07-{:02} 10:00:00'", i % 28 + 1),
            "total_price" => format!("{}.50", i % 1000),
            "status" => self
                .pick(&["'Confirmé'", "'Annulé'", "'Livré'"])
                .to_string(),
            "phone" | "customer_phone" => format!("'+2126{:08}'", i),
            _ => format!("'gen-{i}'"),
        };
        let set = if self.chance(0.04) {
            format!(
                "{}.tenant_id = {}",
                source.reference,
                self.pick(&["1", "2"])
            )
        } else {
            format!("{}.{column} = {value}", source.reference)
        };
        let filter = self.predicate(&sources, 0);
        self.strict = false;
        format!("UPDATE {from} SET {set} WHERE {filter}")
    }
}

/// Each failed write restores both databases: stop early.
const MAX_UPDATE_FAILURES: usize = 25;

fn gen_settings() -> (u64, usize, Duration) {
    let seed = env_u64("SQLGUARD_GEN_SEED", 20_240_611);
    let count = env_u64("SQLGUARD_GEN_COUNT", 400) as usize;
    let secs = env_u64("SQLGUARD_GEN_SECS", 60);
    (seed, count, Duration::from_secs(secs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_selects_match_the_tenant_copy() {
    let (seed, count, budget) = gen_settings();
    let env = read_env();
    let proxy = start_proxy(test_config(env.full)).await;
    let mut oracle = SelectOracle::new(&proxy, &[(1, env.copy[0]), (2, env.copy[1])]).await;
    let mut generator = Gen::new(seed);
    let started = Instant::now();
    let mut tallies = [Tally::default(), Tally::default()];
    let mut failures = Vec::new();
    let mut generated = 0;
    let mut denied_by = std::collections::BTreeMap::new();
    for i in 0..count {
        if started.elapsed() > budget {
            println!(
                "generated SELECTs: wall-clock bound of {budget:?} reached after {i} of {count}"
            );
            break;
        }
        let sql = generator.top_select();
        generated += 1;
        let tenants: &[u64] = if i % 4 == 3 { &[1, 2] } else { &[1] };
        for &tenant in tenants {
            let (verdict, _) = oracle.check(tenant, &sql).await;
            tallies[tenant as usize - 1].add(&verdict);
            if let Verdict::Denied((_, message)) = &verdict {
                *denied_by.entry(denial_rule(message)).or_insert(0usize) += 1;
            }
            if let Verdict::Failure(message) = verdict {
                failures.push(format!(
                    "[seed {seed}, statement {i}] {sql}\n  {message}\n  (replay: SQLGUARD_GEN_SEED={seed} SQLGUARD_GEN_COUNT={})",
                    i + 1
                ));
            }
        }
    }
    println!(
        "generated SELECTs (seed {seed}): {generated} statements\n  tenant 1: {}\n  tenant 2: {}",
        tallies[0], tallies[1]
    );
    println!("  denials by reason: {denied_by:?}");
    let t1 = &tallies[0];
    assert!(
        t1.allowed() * 2 >= t1.executed,
        "fewer than half of the generated SELECTs were allowed ({t1}): the generator no longer exercises the rewrite"
    );
    report_failures("generated SELECTs", &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_updates_stay_in_the_tenant() {
    let (seed, count, budget) = gen_settings();
    let count = count.div_ceil(3);
    let _lock = WRITE_LOCK.lock().await;
    let mut oracle = WriteOracle::new(write_env()).await;
    let mut generator = Gen::new(seed ^ 0x5eed_0000_u64);
    let started = Instant::now();
    let (mut ok, mut denied, mut refused, mut generated) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for i in 0..count {
        if started.elapsed() > budget {
            println!(
                "generated UPDATEs: wall-clock bound of {budget:?} reached after {i} of {count}"
            );
            break;
        }
        if failures.len() >= MAX_UPDATE_FAILURES {
            println!(
                "generated UPDATEs: stopping after {MAX_UPDATE_FAILURES} failures (each one restores both databases)"
            );
            break;
        }
        let sql = generator.update(i);
        generated += 1;
        match oracle.check(&sql).await {
            WriteVerdict::Ok { .. } => ok += 1,
            WriteVerdict::Denied(_) => denied += 1,
            WriteVerdict::RefusedByBackend { proxy, copy } => {
                refused += 1;
                println!(
                    "generated UPDATE {i} refused by the backend after the rewrite (not a leak): {sql}\n  \
                     through sqlguard: {proxy:?}; on the copy: {copy} rows"
                );
            }
            WriteVerdict::Failure(message) => failures.push(format!(
                "[seed {seed}, update {i}] {sql}\n  {message}\n  (replay: SQLGUARD_GEN_SEED={seed} SQLGUARD_GEN_COUNT={})",
                3 * (i + 1)
            )),
        }
    }
    println!(
        "generated UPDATEs (seed {seed}): {generated} statements: {ok} allowed and consistent, \
         {denied} denied, {refused} refused by the backend after the rewrite, {} failed",
        failures.len()
    );
    report_failures("generated UPDATEs", &failures);
}
