// Node's mysql2 against sqlguard over TLS. Prints one JSON object with what it
// observed; tests/tls.rs asserts on it.
// Usage: node mysql2_tls.js PORT CA_PEM TLS_USER TLS_PASSWORD OTHER_CA_PEM
// (TLS_USER has require_tls = true; clawdbot does not.)
'use strict';
const fs = require('fs');
const mysql = require('mysql2/promise');

const [port, caPath, tlsUser, tlsPassword] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
const base = { host: '127.0.0.1', port, database: 'shop' };
// mysql2 verifies the server's certificate against `ca` (rejectUnauthorized
// defaults to true) and the host name, here the IP address 127.0.0.1.
const ssl = { ca: fs.readFileSync(caPath) };

async function errorOf(promise) {
  try { const c = await promise; await c.end(); return null; } catch (e) { return { code: e.errno, message: e.sqlMessage || e.message }; }
}

// What the client's own socket says about its encryption.
function tlsOf(conn) {
  const stream = conn.connection.stream;
  return {
    encrypted: stream.encrypted === true,
    authorized: stream.authorized === true,
    protocol: typeof stream.getProtocol === 'function' ? stream.getProtocol() : null,
    cipher: typeof stream.getCipher === 'function' ? stream.getCipher().name : null,
  };
}

async function main() {
  const out = {};
  const conn = await mysql.createConnection({ ...base, user: 'clawdbot', password: 'meyram-demo', ssl });
  out.tls = tlsOf(conn);
  const [products] = await conn.query("SELECT name FROM products WHERE status = 'active' ORDER BY name LIMIT 3");
  out.products = products.map((r) => r.name);
  const [[exec]] = await conn.execute('SELECT COUNT(*) AS n FROM products WHERE status = ?', ['active']);
  out.activeCount = Number(exec.n);
  out.denied = await conn.query('DELETE FROM orders').then(() => null, (e) => ({ code: e.errno, message: e.sqlMessage }));
  await conn.end();

  const plain = await mysql.createConnection({ ...base, user: 'clawdbot', password: 'meyram-demo' });
  out.plainTls = tlsOf(plain);
  const [[one]] = await plain.query('SELECT COUNT(*) AS n FROM products');
  out.plainCount = Number(one.n);
  await plain.end();

  const required = await mysql.createConnection({ ...base, user: tlsUser, password: tlsPassword, ssl });
  out.requiredTls = tlsOf(required);
  const [[row]] = await required.query('SELECT COUNT(*) AS n FROM products');
  out.requiredCount = Number(row.n);
  await required.end();
  out.requiredPlain = await errorOf(mysql.createConnection({ ...base, user: tlsUser, password: tlsPassword }));
  out.wrongCa = await errorOf(mysql.createConnection({ ...base, user: 'clawdbot', password: 'meyram-demo', ssl: { ca: fs.readFileSync(process.argv[6]) } }));
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
