"""Drives sqlguard with PyMySQL. Prints one JSON object with what it observed;
tests/clients.rs asserts on it. Usage: python3 pymysql_client.py PORT"""
import json
import sys

import pymysql

PORT = int(sys.argv[1])
BASE = dict(host="127.0.0.1", port=PORT, database="shop", charset="utf8mb4")


def error_of(fn):
    try:
        fn()
        return None
    except pymysql.err.MySQLError as e:
        return {"code": e.args[0], "message": e.args[1] if len(e.args) > 1 else str(e)}


def main():
    out = {}
    out["badLogin"] = error_of(lambda: pymysql.connect(user="clawdbot", password="wrong", **BASE))
    conn = pymysql.connect(user="clawdbot", password="meyram-demo", **BASE)  # sends SET AUTOCOMMIT = 0
    with conn.cursor() as cur:
        cur.execute("SELECT name, price FROM products WHERE status = 'active' LIMIT 5")
        out["products"] = [[name, str(price)] for name, price in cur.fetchall()]
        out["deleteError"] = error_of(lambda: cur.execute("DELETE FROM orders"))
        out["dropError"] = error_of(lambda: cur.execute("DROP TABLE products"))
        cur.execute("INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212677770011', 'whatsapp')")
        conn.rollback()
        cur.execute("SELECT COUNT(*) FROM customers WHERE phone = '+212677770011'")
        out["afterRollback"] = cur.fetchone()[0]
        cur.execute("INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212677770012', 'whatsapp')")
        out["insertId"] = str(cur.lastrowid)
        out["affectedRows"] = cur.rowcount
        conn.commit()
        cur.execute("SELECT LAST_INSERT_ID()")
        out["lastInsertId"] = str(cur.fetchone()[0])
        cur.execute("SELECT 'Salam 👋 شحال الثمن؟ é', NULL, CAST(18446744073709551615 AS UNSIGNED)")
        t, n, u = cur.fetchone()
        out["text"] = {"t": t, "n": n, "u": str(u)}
    conn.close()
    sys.stdout.write(json.dumps(out, ensure_ascii=False))


main()
