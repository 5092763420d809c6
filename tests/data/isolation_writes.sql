-- Tenant-isolation write corpus (tests/isolation.rs). One statement per line,
-- run in order through sqlguard as tenant 1 (clawdbot) on the full database,
-- and (unless sqlguard denies it) as root on a copy holding only tenant 1's
-- rows. After each: no row of tenant 2 (or of no tenant) may have changed, and
-- tenant 1's rows must equal the copy's. A denial is fine.
--
-- UPDATE aimed at the other tenant, or escaping the tenant predicate:
UPDATE customers SET notes = 'iso-1' WHERE id = 6
UPDATE customers SET notes = 'iso-2' WHERE id = 1 OR 1 = 1
UPDATE customers SET notes = 'iso-3' WHERE tenant_id = 2
UPDATE customers SET notes = 'iso-4' WHERE tenant_id = 2 OR tenant_id = 1
UPDATE customers SET phone = '+212600000009' WHERE NOT (tenant_id = 1)
UPDATE orders SET status = 'Annulé' WHERE id = '8f14e45f-ceea-467f-a8f2-1e2b5c3d2002'
UPDATE conversations SET ai_sentiment = 'neutral' WHERE status = 'closed' OR 1 = 1
UPDATE customers c SET c.social_handle = 'iso-alias' WHERE c.platform = 'instagram' OR c.id > 0
UPDATE shop.orders SET city = 'Oujda' WHERE total_price > 100
-- UPDATE with subqueries:
UPDATE orders SET status = 'Confirmé' WHERE id IN (SELECT id FROM orders WHERE status = 'En attente')
UPDATE orders SET status = 'Annulé' WHERE customer_id IN (SELECT id FROM customers WHERE phone = '+212600112233')
UPDATE orders SET city = 'Rabat' WHERE customer_id IN (SELECT id FROM customers WHERE platform = 'whatsapp')
UPDATE orders SET address = (SELECT MAX(notes) FROM customers) WHERE status = 'Livré'
UPDATE customers SET notes = (SELECT GROUP_CONCAT(name ORDER BY name) FROM products) WHERE id = 2
UPDATE customers SET notes = 'iso-max' WHERE id = (SELECT MAX(id) FROM customers)
UPDATE conversations SET last_message_at = '2024-07-01 00:00:00' WHERE id IN (SELECT conversation_id FROM messages WHERE sender = 'agent')
UPDATE customers SET notes = 'iso-exists' WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.id AND o.status = 'Annulé')
UPDATE customers SET notes = 'iso-not-exists' WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.id)
-- Multi-table UPDATE:
UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.city = 'Tanger' WHERE c.platform = 'whatsapp'
UPDATE orders o, customers c SET o.customer_name = c.social_handle WHERE c.id = o.customer_id AND c.social_handle IS NOT NULL
UPDATE customers c JOIN conversations v ON v.customer_id = c.id SET c.notes = 'has conversation' WHERE v.status = 'active' OR 1 = 1
UPDATE conversations c LEFT JOIN customers cu ON cu.id = c.customer_id + 5 SET c.ai_sentiment = 'positive' WHERE cu.id IS NULL
UPDATE orders o JOIN customers c ON c.tenant_id = o.tenant_id SET o.customer_phone = c.phone WHERE c.id = 6
-- The tenant column itself:
UPDATE customers SET tenant_id = 1 WHERE id = 6
UPDATE customers SET tenant_id = 2 WHERE id = 1
-- Plain INSERT:
INSERT INTO customers (phone, platform, notes) VALUES ('+212600000001', 'whatsapp', 'iso insert')
INSERT INTO customers (tenant_id, phone) VALUES (2, '+212600000002')
INSERT INTO customers (tenant_id, phone) VALUES (1, '+212600000004')
INSERT INTO orders (id, customer_id, total_price, status) VALUES ('6ec0bd7f-11c0-43da-975e-2a8ad9eb1099', 1, 10.00, 'En attente')
INSERT INTO orders (id, customer_id, total_price) VALUES ('6ec0bd7f-11c0-43da-975e-2a8ad9eb1098', 6, 10.00)
INSERT INTO messages (conversation_id, sender, type, content) VALUES (1, 'customer', 'text', 'iso message')
INSERT INTO messages (conversation_id, sender, type, content) VALUES (5, 'customer', 'text', 'cross-tenant message')
INSERT INTO messages (conversation_id, sender, content) VALUES (7, 'ai', 'cross-tenant AI reply')
INSERT INTO messages (conversation_id, sender, content) VALUES (2, 'ai', 'reply in a closed conversation')
INSERT INTO customers (phone) VALUES ('+212600000003') ON DUPLICATE KEY UPDATE notes = 'dup'
-- INSERT ... SELECT:
INSERT INTO customers (phone, notes) SELECT phone, 'copied' FROM customers WHERE tenant_id = 2
INSERT INTO customers (phone, notes) SELECT customer_phone, 'from orders' FROM orders WHERE status = 'Livré'
INSERT INTO customers (phone, social_handle) SELECT c.phone, c.social_handle FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.city = 'Fès' OR 1 = 1
INSERT INTO orders (id, customer_id, total_price) SELECT '6ec0bd7f-11c0-43da-975e-2a8ad9eb1097', MIN(id), 1.00 FROM customers
INSERT INTO messages (conversation_id, sender, content) SELECT MAX(id), 'customer', 'latest conversation' FROM conversations
INSERT INTO messages (conversation_id, sender, content) SELECT id, 'customer', 'to every conversation' FROM conversations WHERE status = 'active' OR 1 = 1
INSERT INTO customers (phone, notes) SELECT name, 'tenant names' FROM tenants
