// Drives sqlguard with Node's mysql2 (query() = text protocol), the driver a
// Node bot like Clawdbot uses. Prints one JSON object with what it observed;
// tests/clients.rs asserts on it. Usage: node mysql2_client.js PORT
'use strict';
const mysql = require('mysql2/promise');

const port = Number(process.argv[2]);
const base = { host: '127.0.0.1', port, database: 'shop', supportBigNumbers: true, bigNumberStrings: true, dateStrings: true };

async function errorOf(promise) {
  try { await promise; return null; } catch (e) { return { code: e.errno, sqlState: e.sqlState, message: e.sqlMessage || e.message }; }
}

async function main() {
  const out = {};
  out.badLogin = await errorOf(mysql.createConnection({ ...base, user: 'clawdbot', password: 'wrong' }));
  const conn = await mysql.createConnection({ ...base, user: 'clawdbot', password: 'meyram-demo' });
  const [products] = await conn.query("SELECT name, price FROM products WHERE status = 'active' LIMIT 5");
  out.products = products;
  const [like] = await conn.query("SELECT price FROM products WHERE name LIKE '%a%' LIMIT 3");
  out.likeCount = like.length;
  out.deleteError = await errorOf(conn.query('DELETE FROM orders'));
  out.dropError = await errorOf(conn.query('DROP TABLE products'));
  out.stackedError = await errorOf(conn.query('SELECT 1; DROP TABLE products'));
  await conn.query('BEGIN');
  await conn.query("INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212677770001', 'whatsapp')");
  await conn.query('ROLLBACK');
  const [[afterRollback]] = await conn.query("SELECT COUNT(*) AS n FROM customers WHERE phone = '+212677770001'");
  out.afterRollback = Number(afterRollback.n);
  const [ins] = await conn.query("INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212677770002', 'whatsapp')");
  out.insertId = String(ins.insertId);
  out.affectedRows = ins.affectedRows;
  const [[lid]] = await conn.query('SELECT LAST_INSERT_ID() AS id');
  out.lastInsertId = String(lid.id);
  const [[text]] = await conn.query("SELECT 'Salam 👋 شحال الثمن؟ é' AS t, NULL AS n, CAST(18446744073709551615 AS UNSIGNED) AS u");
  out.text = text;
  await conn.end();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
