-- Tenant-isolation oracle corpus (tests/isolation.rs). One SELECT per line.
-- Each runs through sqlguard as tenant 1 and as tenant 2 on the full database,
-- and directly on a copy holding only that tenant's rows: the row multisets
-- must be equal (DESIGN.md, "What correct means"). Results stay under 20 rows
-- per tenant where possible, or carry a total ORDER BY with LIMIT.
--
-- Whole tables, aggregates over whole tables:
SELECT COUNT(*) FROM customers
SELECT COUNT(*), SUM(total_price), MAX(created_at) FROM orders
SELECT id, phone, platform FROM customers
SELECT * FROM customers
SELECT id, name, price, stock, status FROM products
SELECT COUNT(*) FROM messages
SELECT id, conversation_id, sender, content FROM messages
SELECT id, name, slug, domain, status FROM tenants
SELECT COUNT(*) FROM tenants
SELECT id, name, role FROM users
SELECT id, name, discount_price, product_ids FROM packs
SELECT * FROM categories
SELECT * FROM home_collections
SELECT id, c_int, c_varchar, c_uuid FROM type_probe
SELECT COUNT(*), SUM(k), MIN(id), MAX(id) FROM bench_points
SELECT id, k FROM bench_points WHERE k < 40
SELECT MAX(id), MIN(id) FROM customers
SELECT DISTINCT tenant_id FROM orders
-- WHERE clauses that try to escape the tenant predicate:
SELECT id, name FROM products WHERE status = 'active' OR 1 = 1
SELECT id, phone FROM customers WHERE tenant_id = 2
SELECT id, phone FROM customers WHERE tenant_id = 2 OR tenant_id = 1
SELECT id, phone FROM customers WHERE tenant_id IN (1, 2)
SELECT id, phone FROM customers WHERE NOT (tenant_id = 1)
SELECT id, phone FROM customers WHERE tenant_id <> 1 OR id > 0
SELECT id FROM customers WHERE 1 = 1 OR tenant_id = 2 AND id > 0
SELECT id FROM customers WHERE id = 6 OR id = 1
SELECT id, name FROM products WHERE id = '9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2001'
SELECT id, name FROM products WHERE id IN ('9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2002', '3f2504e0-4f89-41d3-9a0c-0305e82c1001')
SELECT id, phone FROM customers WHERE phone = '+212600112233'
SELECT id, phone, notes FROM customers WHERE phone LIKE '+2126%' OR notes IS NULL
SELECT id, content FROM messages WHERE conversation_id = 5
SELECT id, content FROM messages WHERE conversation_id > 0 OR 1 = 1
SELECT name FROM tenants WHERE id = 2
SELECT name FROM tenants WHERE id = 2 OR 1 = 1
-- Aliases, qualified and quoted names:
SELECT c.id, c.phone FROM customers AS c WHERE c.platform = 'whatsapp'
SELECT `c`.`id`, `c`.`platform` FROM `customers` AS `c`
SELECT shop.customers.id FROM shop.customers
SELECT o.id, o.total_price FROM shop.orders o WHERE o.status = 'Livré'
SELECT shop.products.name FROM shop.products WHERE shop.products.stock = 0
SELECT customers.id, customers.total_price FROM orders AS customers
SELECT conversations.id, conversations.sender FROM messages AS conversations
-- Joins:
SELECT c.id, o.id, o.status FROM customers c JOIN orders o ON o.customer_id = c.id
SELECT c.id, o.id FROM customers c INNER JOIN orders o ON o.customer_id = c.id WHERE o.status = 'En attente' OR 1 = 1
SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
SELECT c.id, o.id FROM orders o RIGHT JOIN customers c ON c.id = o.customer_id
SELECT c.id, o.id FROM customers c, orders o WHERE o.customer_id = c.id
SELECT c.id, v.id FROM customers c, conversations v WHERE v.customer_id = c.id AND (v.status = 'active' OR 1 = 1)
SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = 6
SELECT c.id, cat.name FROM customers c LEFT JOIN categories cat ON cat.name = 'Décoration'
SELECT v.id, m.id FROM conversations v LEFT JOIN messages m ON m.conversation_id = v.id + 4
SELECT v.id, m.id FROM conversations v LEFT JOIN messages m ON m.conversation_id = v.id AND m.sender = 'agent'
SELECT c.id, p.name FROM customers c JOIN products p ON p.tenant_id = c.tenant_id WHERE c.id IN (1, 6)
SELECT m.id, v.status FROM messages m JOIN conversations v ON v.id = m.conversation_id WHERE v.status = 'active'
SELECT m.id, v.status FROM messages m, conversations v WHERE v.id = m.conversation_id
SELECT COUNT(*) FROM messages m JOIN conversations v ON v.id = m.conversation_id JOIN customers c ON c.id = v.customer_id
SELECT c.id, v.id, m.id FROM customers c LEFT JOIN conversations v ON v.customer_id = c.id LEFT JOIN messages m ON m.conversation_id = v.id AND m.sender = 'ai'
SELECT c.id, o.id FROM (customers c JOIN orders o ON o.customer_id = c.id)
SELECT c.id, o.id, p.name FROM customers c LEFT JOIN (orders o JOIN products p ON p.tenant_id = o.tenant_id AND p.stock = 0) ON o.customer_id = c.id
SELECT a.id, b.id FROM customers a JOIN customers b ON a.platform = b.platform AND a.id < b.id
SELECT a.id, b.id FROM orders a LEFT JOIN orders b ON b.customer_id = a.customer_id AND b.id <> a.id
SELECT t.name, c.id FROM tenants t JOIN customers c ON c.tenant_id = t.id WHERE c.platform = 'instagram'
SELECT t.name, COUNT(c.id) FROM tenants t LEFT JOIN customers c ON c.tenant_id = t.id GROUP BY t.name
SELECT u.name, h.name FROM home_univers u JOIN home_collections h ON h.univers_id = u.id
SELECT h.name, u.name FROM home_collections h LEFT JOIN home_univers u ON u.id = h.univers_id
SELECT COUNT(*) FROM home_univers NATURAL JOIN home_collections
SELECT o.id, c.phone FROM orders o JOIN customers c USING (tenant_id) WHERE o.status = 'Livré'
-- Subqueries in the SELECT list, WHERE, HAVING, ON:
SELECT (SELECT COUNT(*) FROM orders) AS n
SELECT (SELECT MAX(total_price) FROM orders) AS m FROM DUAL
SELECT c.id, (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id) AS n FROM customers c
SELECT COUNT(*), (SELECT COUNT(*) FROM messages) FROM conversations
SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders)
SELECT id FROM customers WHERE id NOT IN (SELECT customer_id FROM orders)
SELECT name FROM categories WHERE name NOT IN (SELECT category FROM products WHERE category IS NOT NULL)
SELECT id FROM customers WHERE id IN (SELECT customer_id FROM conversations WHERE tenant_id = 2)
SELECT m.id FROM messages m WHERE m.conversation_id IN (SELECT id FROM conversations WHERE status = 'closed')
SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)
SELECT c.id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)
SELECT v.id FROM conversations v WHERE EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = v.id AND m.sender = 'agent')
SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM customers WHERE customers.id = o.customer_id AND customers.platform = 'whatsapp')
SELECT c.id FROM customers c WHERE c.id IN (SELECT c.customer_id FROM orders c)
SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM products WHERE stock > 40)
SELECT id FROM customers WHERE lifetime_value > (SELECT AVG(total_price) FROM orders)
SELECT name FROM tenants t WHERE EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = t.id)
SELECT id FROM customers WHERE tenant_id IN (SELECT id FROM tenants WHERE status = 'active')
SELECT customer_id, COUNT(*) FROM orders GROUP BY customer_id HAVING COUNT(*) >= (SELECT COUNT(*) FROM packs) - 1
SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id AND o.total_price > (SELECT AVG(total_price) FROM orders)
-- Derived tables and CTEs:
SELECT x.id FROM (SELECT id, tenant_id FROM customers) AS x WHERE x.tenant_id = 2
SELECT x.id FROM (SELECT id FROM customers ORDER BY id LIMIT 2) x
SELECT c.phone, t.n FROM customers c JOIN (SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id) t ON t.customer_id = c.id
SELECT x.c, x.n FROM (SELECT conversation_id AS c, COUNT(*) AS n FROM messages GROUP BY conversation_id) x
SELECT orders.id FROM (SELECT id FROM customers) AS orders
WITH big AS (SELECT customer_id, SUM(total_price) AS s FROM orders GROUP BY customer_id) SELECT c.phone, big.s FROM customers c JOIN big ON big.customer_id = c.id
WITH active AS (SELECT id FROM conversations WHERE status = 'active' OR 1 = 1) SELECT m.id FROM messages m JOIN active a ON a.id = m.conversation_id
WITH customers AS (SELECT 1 AS id) SELECT id FROM customers
WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 8) SELECT seq.n, c.id FROM seq LEFT JOIN customers c ON c.id = seq.n
-- UNION, UNION ALL, INTERSECT, EXCEPT:
SELECT phone FROM customers UNION SELECT customer_phone FROM orders
SELECT id FROM customers UNION ALL SELECT id FROM conversations
SELECT name FROM tenants UNION SELECT name FROM categories
SELECT 'x' UNION SELECT name FROM categories
SELECT id FROM customers WHERE tenant_id = 2 UNION ALL SELECT id FROM customers WHERE tenant_id = 1
SELECT customer_id FROM orders INTERSECT SELECT customer_id FROM conversations
SELECT customer_id FROM orders EXCEPT SELECT customer_id FROM conversations
-- GROUP BY, HAVING, DISTINCT, windows, ORDER BY + LIMIT:
SELECT tenant_id, COUNT(*) FROM products GROUP BY tenant_id
SELECT status, COUNT(*), SUM(total_price) FROM orders GROUP BY status
SELECT platform, COUNT(*) FROM customers GROUP BY platform HAVING COUNT(*) > 1
SELECT COUNT(*) FROM customers HAVING COUNT(*) > 0
SELECT COUNT(DISTINCT category) FROM products
SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM customers
SELECT id, COUNT(*) OVER () FROM orders
SELECT id FROM customers ORDER BY id DESC LIMIT 3
SELECT id FROM customers ORDER BY id LIMIT 2 OFFSET 3
SELECT id, k FROM bench_points ORDER BY k, id LIMIT 10
SELECT sender, COUNT(*) FROM messages GROUP BY sender
