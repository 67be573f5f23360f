"""Runs the SQL chainflow ships (from `chainflow migrate --print-for X.Y` on stdin) on a
current ClickHouse engine, in process (chdb), then checks the deduplication tokens the sink
relies on for newer servers: a batch inserted again under its token (the real format,
`sink/src/batch.rs` GOLDEN) is dropped, and a batch of a recreated topic, at the same
offsets but with other records (another digest), is kept.
With --parse-only (the cluster DDL of `--print-for X.Y --cluster NAME`): parses each
statement instead, since ON CLUSTER cannot run in process."""
import sys
import tempfile

from chdb import session

sql = "\n".join(line for line in sys.stdin.read().splitlines() if not line.lstrip().startswith("--"))
statements = [s.strip() for s in sql.split(";\n") if s.strip()]
with tempfile.TemporaryDirectory() as path:
    db = session.Session(path)
    print("chdb (ClickHouse", db.query("SELECT version()", "CSV").bytes().decode().strip().strip('"') + ")")
    if sys.argv[1:] == ["--parse-only"]:
        # the cluster DDL (ON CLUSTER, Replicated engines, Keeper macros) cannot run in
        # process: each statement is parsed (EXPLAIN AST) and must be a CREATE, an ALTER
        # adding a column, a RENAME or a DROP, ON CLUSTER, or the copy of a table made again
        # under another key (INSERT ... SELECT through the distributed tables, once)
        for s in statements:
            try:
                ast = db.query("EXPLAIN AST " + s.rstrip(";"), "TSV").bytes().decode()
            except Exception as e:  # noqa: BLE001 - report the statement that failed
                sys.exit(f"statement does not parse on chdb: {e}\n{s}")
            on_cluster = "ON CLUSTER" in s and ast.startswith(("CreateQuery", "AlterQuery", "Rename", "DropQuery"))
            copy = ast.startswith("InsertQuery") and " SELECT " in s and "insert_distributed_sync = 1" in s
            if not (on_cluster or copy):
                sys.exit(f"not a CREATE, ALTER, RENAME or DROP ... ON CLUSTER statement, nor a synchronous copy:\n{s}")
        print(f"{len(statements)} cluster statements parse")
        sys.exit(0)
    for s in statements:
        try:
            db.query(s.rstrip(";"))
        except Exception as e:  # noqa: BLE001 - report the statement that failed
            sys.exit(f"statement failed on chdb: {e}\n{s}")
    golden = "enriched.option_chain/3/10-12/9cf76e760d42792c"
    recreated = "enriched.option_chain/3/10-12/0123456789abcdef"

    def insert(token, seq):
        row = (f"('NIFTY', '2025-01-30', 1738224000000000, {seq}, 50, 21543.25, 21, 1.0234, NULL, 21550, NULL, NULL, "
               "5000000, 5117000, 0, 0, 0, 0, NULL, NULL, 0.065, 0.012, 0.01, '2', 'market.option_chain', 3, 10, 1, 1)")
        db.query("INSERT INTO chainflow.chain_snapshots (product, expiry, event_time_us, seq, lot_size, spot, "
                 "strike_count, pcr_oi, pcr_volume, atm_strike, atm_straddle_price, max_pain_strike, total_call_oi, "
                 "total_put_oi, call_oi_otm, put_oi_otm, call_buildup_otm, put_buildup_otm, atm_iv, iv_skew_25d, "
                 "rate, dividend_yield, time_to_expiry, analytics_version, source_topic, source_partition, "
                 f"source_offset, processed_at_us, version) SETTINGS insert_deduplication_token = '{token}/chain_snapshots' "
                 "VALUES " + row)

    def count():
        return db.query("SELECT count() FROM chainflow.chain_snapshots", "CSV").bytes().decode().strip()

    insert(golden, 1)
    insert(golden, 1)
    if count() != "1":
        sys.exit(f"a batch inserted again under its token was stored twice ({count()} rows)")
    insert(recreated, 2)
    if count() != "2":
        sys.exit(f"a recreated topic's batch at the same offsets was dropped as a duplicate ({count()} rows)")
    print(f"{len(statements)} statements ran; a repeated batch dropped by its token, a recreated topic's kept")
