// The result cache seen from mysql2: the seed's product-list and price
// queries, each sent twice with query() (text protocol) and execute()
// (prepared, binary protocol), then again on a second connection. The first
// of each may come from MariaDB, the rest from sqlguard's cache; prints one
// JSON object with every result and its column metadata, and tests/cache.rs
// asserts they are identical. Usage: node mysql2_cache.js PORT
'use strict';
const mysql = require('mysql2/promise');

const port = Number(process.argv[2]);
const LIST = "SELECT id, name, price, compare_at_price, images, created_at FROM products WHERE status = 'active' ORDER BY name LIMIT 10";
const PRICE = 'SELECT name, price FROM products WHERE name LIKE ? ORDER BY name';

function shape([rows, fields]) {
  return {
    rows,
    fields: fields.map((f) => [f.name, f.table, f.orgName, f.columnType, f.characterSet, f.columnLength, f.flags, f.decimals]),
  };
}

async function connect() {
  return mysql.createConnection({
    host: '127.0.0.1', port, database: 'shop', user: 'clawdbot', password: 'meyram-demo',
    supportBigNumbers: true, bigNumberStrings: true, dateStrings: true,
  });
}

async function main() {
  const out = { query: [], execute: [] };
  for (let c = 0; c < 2; c++) {
    const conn = await connect();
    for (let i = 0; i < 2; i++) {
      out.query.push(shape(await conn.query(LIST)));
      out.execute.push(shape(await conn.execute(PRICE, ['%o%'])));
    }
    await conn.end();
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
