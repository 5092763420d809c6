"""PyMySQL against sqlguard over TLS. Prints one JSON object with what it
observed; tests/tls.rs asserts on it.
Usage: python3 pymysql_tls.py PORT CA_PEM TLS_USER TLS_PASSWORD
(TLS_USER has require_tls = true.)"""
import json
import sys

import pymysql

PORT, CA, USER, PASSWORD = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
BASE = dict(host="127.0.0.1", port=PORT, database="shop", charset="utf8mb4")
# The certificate is verified against CA, and the host name (127.0.0.1) too.
SSL = dict(ssl_ca=CA, ssl_verify_cert=True, ssl_verify_identity=True)


def tls_of(conn):
    """What the client's own socket says about its encryption."""
    sock = conn._sock
    version = getattr(sock, "version", None)
    cipher = getattr(sock, "cipher", None)
    return {
        "version": version() if version else None,
        "cipher": cipher()[0] if cipher else None,
    }


def main():
    out = {}
    conn = pymysql.connect(user=USER, password=PASSWORD, **BASE, **SSL)
    out["tls"] = tls_of(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM products WHERE status = %s", ("active",))
        out["activeCount"] = cur.fetchone()[0]
        cur.execute("BEGIN")
        cur.execute("INSERT INTO customers (tenant_id, phone, platform) VALUES (1, '+212677770099', 'whatsapp')")
        cur.execute("ROLLBACK")
        cur.execute("SELECT COUNT(*) FROM customers WHERE phone = '+212677770099'")
        out["afterRollback"] = cur.fetchone()[0]
    conn.close()
    # PyMySQL 1.2 without ssl options uses TLS when offered (PREFERRED mode,
    # unverified): the require_tls user gets in.
    preferred = pymysql.connect(user=USER, password=PASSWORD, **BASE)
    out["preferred"] = tls_of(preferred)
    preferred.close()
    try:
        pymysql.connect(user=USER, password=PASSWORD, ssl_disabled=True, **BASE).close()
        out["plain"] = None
    except pymysql.err.MySQLError as e:
        out["plain"] = {"code": e.args[0], "message": e.args[1] if len(e.args) > 1 else str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
