-- Statements run directly and through sqlguard on twin databases; results
-- must be identical (tests/differential.rs). One statement per line.
-- Each is already limited to tenant 1 (the proxy user's tenant), so the
-- guard's tenant predicates change nothing and only the protocol is compared.
-- Every column type of the fixture, NULLs and extremes:
SELECT * FROM type_probe WHERE tenant_id = 1 ORDER BY id
SELECT id, c_tinyint, c_smallint, c_mediumint, c_int, c_bigint, c_ubigint FROM type_probe WHERE tenant_id = 1 ORDER BY id
SELECT id, c_decimal, c_float, c_double, c_bit FROM type_probe WHERE tenant_id = 1 ORDER BY id
SELECT id, c_date, c_time, c_datetime, c_timestamp, c_year FROM type_probe WHERE tenant_id = 1 ORDER BY id
SELECT id, c_char, c_varchar, c_text FROM type_probe WHERE tenant_id = 1 ORDER BY id
SELECT id, c_blob, c_varbinary, c_json, c_enum, c_set, c_uuid FROM type_probe WHERE tenant_id = 1 ORDER BY id
SELECT c_ubigint, c_ubigint - 1, c_bigint FROM type_probe WHERE id = 1
SELECT t.id AS probe_id, t.c_json AS doc FROM type_probe t WHERE t.c_json IS NOT NULL AND t.tenant_id = 1 ORDER BY t.id
-- The seed schema's tables:
SELECT id, name, slug, domain, settings, status, created_at FROM tenants WHERE id = 1
SELECT * FROM products WHERE tenant_id = 1 ORDER BY id
SELECT name, price FROM products WHERE status = 'active' AND tenant_id = 1 LIMIT 5
SELECT price FROM products WHERE name LIKE '%a%' AND tenant_id = 1 ORDER BY price
SELECT stock FROM products WHERE id = '3f2504e0-4f89-41d3-9a0c-0305e82c1001'
SELECT * FROM customers WHERE phone = '+212612345678' AND tenant_id = 1
SELECT * FROM orders WHERE tenant_id = 1 ORDER BY id
SELECT id, product_data, JSON_EXTRACT(product_data, '$[0].quantity') AS qty FROM orders WHERE tenant_id = 1 ORDER BY id
SELECT c.id, c.status, COUNT(m.id) AS n FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id WHERE c.tenant_id = 1 GROUP BY c.id, c.status ORDER BY c.id
SELECT * FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE tenant_id = 1) ORDER BY id
SELECT * FROM packs WHERE tenant_id = 1 ORDER BY id
SELECT * FROM categories WHERE tenant_id = 1 ORDER BY id
SELECT * FROM home_univers WHERE tenant_id = 1 ORDER BY id
SELECT * FROM home_collections WHERE tenant_id = 1 ORDER BY id
-- Expressions and functions whose text form must pass through untouched:
SELECT 1.50 AS d, -0.0 AS z, 1e300 AS big, CAST(1 AS UNSIGNED) + 2 AS u
SELECT NULL AS n, '' AS empty, 'é🛒' AS s, CAST('2024-02-29 12:34:56.789' AS DATETIME(3)) AS dt
SELECT SUM(price), AVG(price), MIN(created_at), MAX(updated_at) FROM products WHERE tenant_id = 1
SELECT UUID() IS NOT NULL AS has_uuid, DATABASE() AS db
-- Writes: affected rows and last insert ids (twins are in the same state):
INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212655500001', 'whatsapp')
SELECT LAST_INSERT_ID()
INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212655500002', 'whatsapp'), (1, '+212655500003', 'instagram')
SELECT LAST_INSERT_ID()
UPDATE customers SET notes = 'client fidèle' WHERE tenant_id = 1 AND platform = 'whatsapp'
UPDATE customers SET notes = notes WHERE tenant_id = 1
INSERT INTO orders (id, tenant_id, customer_id, total_price, status) VALUES ('11111111-2222-4333-8444-555555555555', 1, 1, 299.00, 'En attente')
INSERT INTO orders (id, tenant_id, customer_id, total_price, status) VALUES ('11111111-2222-4333-8444-555555555555', 1, 1, 299.00, 'En attente') -- expect error
UPDATE orders SET status = 'Confirmé', address = '12 Rue Tarik', city = 'Casablanca' WHERE id = '11111111-2222-4333-8444-555555555555'
SELECT id, status, address, city FROM orders WHERE id = '11111111-2222-4333-8444-555555555555'
-- Warnings travel with the OK packet and the result set's end:
SELECT CAST('12abc' AS SIGNED) AS truncated
INSERT IGNORE INTO customers (tenant_id, phone, platform) VALUES (1, '+2126555000049999999999', 'whatsapp')
