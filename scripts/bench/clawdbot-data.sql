-- Catalogue and customers for the benchmark's Clawdbot workload
-- (scripts/bench/clawdbot.lua), loaded by scripts/bench.sh after
-- fixtures/demo.sql. The fixture has a handful of rows per tenant; a shop
-- the bot serves has hundreds of products and thousands of customers, and
-- other tenants' rows sit in the same tables (that is what tenant scoping
-- filters out). Deterministic, so the workload can name rows that exist.
--
-- Must match clawdbot.lua: tenants 1-10, per tenant 500 products and
-- 2,000 customers;
--   product n of tenant t: id   b0000000-0000-4000-8000-<t:4 digits><n:8 digits>
--                          name <WORD n % 8> modele <n>, category <CAT n % 4>,
--                          status 'draft' when n % 10 = 0, else 'active'
--   customer n of tenant t: id t * 100000 + n, phone +2126<t:2 digits><n:5 digits>

SET NAMES utf8mb4;
-- MariaDB stops a recursive CTE after 1,000 iterations by default.
SET SESSION max_recursive_iterations = 100000;

INSERT INTO tenants (id, name, slug, status)
WITH RECURSIVE t (id) AS (SELECT 3 UNION ALL SELECT id + 1 FROM t WHERE id < 10)
SELECT id, CONCAT('Bench shop ', id), CONCAT('bench-shop-', id), 'active' FROM t;

INSERT INTO products (id, tenant_id, name, price, compare_at_price, description,
                      category, stock, status, is_featured)
WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 500)
SELECT CONCAT('b0000000-0000-4000-8000-', LPAD(t.id, 4, '0'), LPAD(seq.n, 8, '0')),
       t.id,
       CONCAT(ELT(1 + seq.n % 8, 'Montre', 'Ecouteurs', 'Chargeur', 'Djellaba',
                  'Sac a dos', 'Enceinte', 'Babouches', 'Tapis'), ' modele ', seq.n),
       50 + (seq.n * 37) % 950,
       IF(seq.n % 3 = 0, 100 + (seq.n * 37) % 950, NULL),
       CONCAT('Article ', seq.n, ' de la boutique ', t.id, ': livraison partout au Maroc.'),
       ELT(1 + seq.n % 4, 'Electronique', 'Mode', 'Maison', 'Beaute'),
       seq.n % 50,
       IF(seq.n % 10 = 0, 'draft', 'active'),
       seq.n % 7 = 0
FROM tenants t JOIN seq
WHERE t.id BETWEEN 1 AND 10;

INSERT INTO customers (id, tenant_id, phone, platform, lifetime_value, notes)
WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 2000)
SELECT t.id * 100000 + seq.n,
       t.id,
       CONCAT('+2126', LPAD(t.id, 2, '0'), LPAD(seq.n, 5, '0')),
       ELT(1 + seq.n % 3, 'whatsapp', 'instagram', 'facebook'),
       (seq.n * 13) % 3000,
       IF(seq.n % 5 = 0, 'Livraison le soir de preference.', NULL)
FROM tenants t JOIN seq
WHERE t.id BETWEEN 1 AND 10;

ANALYZE TABLE tenants, products, customers, orders;
