"""Runs the SQL chainflow ships (from `chainflow migrate --print-for X.Y` on stdin) on a
current ClickHouse engine, in process (chdb), then checks that a repeated insert with the
same insert_deduplication_token is dropped, as the sink relies on for newer servers."""
import sys
import tempfile

from chdb import session

sql = sys.stdin.read()
statements = [s.strip() for s in sql.split(";\n") if s.strip() and not s.strip().startswith("--")]
with tempfile.TemporaryDirectory() as path:
    db = session.Session(path)
    print("chdb (ClickHouse", db.query("SELECT version()", "CSV").bytes().decode().strip().strip('"') + ")")
    for s in statements:
        try:
            db.query(s.rstrip(";"))
        except Exception as e:  # noqa: BLE001 - report the statement that failed
            sys.exit(f"statement failed on chdb: {e}\n{s}")
    row = ("('NIFTY', '2025-01-30', 1738224000000000, 1, 50, 21543.25, 21, 1.0234, NULL, 21550, NULL, NULL, "
           "5000000, 5117000, 0, 0, 0, 0, NULL, NULL, 0.065, 0.012, 0.01, '1', 'market.option_chain', 0, 0, 1, 1)")
    for _ in range(2):
        db.query("INSERT INTO chainflow.chain_snapshots (product, expiry, event_time_us, seq, lot_size, spot, "
                 "strike_count, pcr_oi, pcr_volume, atm_strike, atm_straddle_price, max_pain_strike, total_call_oi, "
                 "total_put_oi, call_oi_otm, put_oi_otm, call_buildup_otm, put_buildup_otm, atm_iv, iv_skew_25d, "
                 "rate, dividend_yield, time_to_expiry, analytics_version, source_topic, source_partition, "
                 "source_offset, processed_at_us, version) SETTINGS insert_deduplication_token = 'batch-1' VALUES "
                 + row)
    count = db.query("SELECT count() FROM chainflow.chain_snapshots", "CSV").bytes().decode().strip()
    if count != "1":
        sys.exit(f"a repeated batch with the same deduplication token was stored twice ({count} rows)")
    print(f"{len(statements)} statements ran; deduplication token honoured")
