// The seed workflow with mysql2's execute() (server-side prepared statements,
// what the seed's "use prepared statements" means for a Node bot). Prints one
// JSON object; tests/clients.rs asserts on it. Usage: node mysql2_execute.js PORT
'use strict';
const mysql = require('mysql2/promise');

const port = Number(process.argv[2]);

async function errorOf(promise) {
  try { await promise; return null; } catch (e) { return { code: e.errno, message: e.sqlMessage || e.message }; }
}

async function main() {
  const out = {};
  const conn = await mysql.createConnection({
    host: '127.0.0.1', port, database: 'shop', user: 'clawdbot', password: 'meyram-demo',
    supportBigNumbers: true, bigNumberStrings: true, dateStrings: true,
  });
  const [list] = await conn.execute("SELECT name, price FROM products WHERE status = ? LIMIT 5", ['active']);
  out.products = list;
  const [price] = await conn.execute('SELECT price FROM products WHERE name LIKE ?', ['%Montre%']);
  out.price = price;
  const [stock] = await conn.execute('SELECT stock FROM products WHERE id = ?', ['3f2504e0-4f89-41d3-9a0c-0305e82c1001']);
  out.stock = stock;
  const [foreign] = await conn.execute('SELECT stock FROM products WHERE id = ?', ['9b1deb4d-3b7d-4bad-9bdd-2b0d7b3d2001']);
  out.foreignStock = foreign;
  out.badUuid = await errorOf(conn.execute('SELECT stock FROM products WHERE id = ?', ["' OR 1=1 -- "]));
  const [customer] = await conn.execute('SELECT id, phone FROM customers WHERE phone = ?', ['+212612345678']);
  out.customer = customer;
  const [ins] = await conn.execute('INSERT INTO customers (phone, created_at) VALUES (?, NOW())', ['+212677770101']);
  out.newCustomerId = String(ins.insertId);
  const orderId = 'cccccccc-bbbb-4ccc-8ddd-000000000001';
  const productData = JSON.stringify([{ product_id: '3f2504e0-4f89-41d3-9a0c-0305e82c1001', quantity: 1, price: 299.0 }]);
  const [order] = await conn.execute(
    'INSERT INTO orders (id, customer_id, product_data, total_price, status) VALUES (?, ?, ?, ?, ?)',
    [orderId, ins.insertId, productData, '299.00', 'En attente']);
  out.orderInserted = order.affectedRows;
  const [confirm] = await conn.execute(
    'UPDATE orders SET status = ?, address = ?, city = ? WHERE id = ?',
    ['Confirmé', '12 Rue Tarik', 'Casablanca', orderId]);
  out.confirmed = confirm.affectedRows;
  const [[order2]] = await conn.execute('SELECT status, city, product_data, total_price FROM orders WHERE id = ?', [orderId]);
  out.order = order2;
  out.deleteError = await errorOf(conn.execute('DELETE FROM orders WHERE id = ?', [orderId]));
  const [emoji] = await conn.execute("SELECT ? AS t", ['Salam 👋 شحال الثمن؟ é']);
  out.echo = emoji[0].t;
  await conn.end();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
