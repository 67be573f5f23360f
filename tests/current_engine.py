"""Loads rows into a current ClickHouse engine (chdb, in process) and runs queries there,
for tests/cookbook.rs and tests/dashboards.rs. Reads one JSON object on stdin:
  {"schema": SQL (what `chainflow migrate --print-for 26.1` prints), "database": NAME,
   "tables": {TABLE: JSON lines}, "queries": {NAME: SQL}}
and prints {NAME: [row, ...]} (rows as JSON objects). The schema's materialized views see
the inserts, as they do on a server."""
import json
import sys
import tempfile

from chdb import session

spec = json.load(sys.stdin)
sql = "\n".join(line for line in spec["schema"].splitlines() if not line.lstrip().startswith("--"))
with tempfile.TemporaryDirectory() as path:
    db = session.Session(path)
    for statement in (s.strip() for s in sql.split(";\n")):
        if statement:
            db.query(statement.rstrip(";"))
    db.query(f"USE {spec['database']}")
    for table, rows in spec["tables"].items():
        if rows.strip():
            db.query(f"INSERT INTO {table} FORMAT JSONEachRow\n{rows}")
    answers = {}
    for name, query in spec["queries"].items():
        try:
            out = db.query(query, "JSONEachRow").bytes().decode()
        except Exception as e:  # noqa: BLE001 - name the query that failed
            sys.exit(f"query {name} failed on chdb: {e}\n{query}")
        answers[name] = [json.loads(line) for line in out.splitlines() if line.strip()]
print(json.dumps(answers))
