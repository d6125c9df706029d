"""Python peer for scripts/bench_reader.sh: python-mysql-replication (pymysqlreplication)
reading a binlog range from a server and producing one JSON document per row change.

usage: bench_reader_py.py HOST PORT FILE START END
Prints the number of row changes read to stdout. JSON goes to a reused in-memory sink
(its length is accumulated so the work cannot be skipped), comparable to `--sink null`.
"""
import json
import sys

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def main() -> None:
    host, port, log_file, start, end = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    stream = BinLogStreamReader(
        connection_settings={"host": host, "port": port, "user": "root", "passwd": ""},
        server_id=4242999,
        log_file=log_file,
        log_pos=start,
        end_log_pos=end,
        resume_stream=True,
        blocking=False,
        is_mariadb=True,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
    )
    rows = 0
    out_bytes = 0
    try:
        for ev in stream:
            if ev.packet.log_pos > end:
                break
            table = f"{ev.schema}.{ev.table}"
            for row in ev.rows:
                if isinstance(ev, UpdateRowsEvent):
                    doc = {"table": table, "op": "u", "before": row["before_values"], "after": row["after_values"]}
                elif isinstance(ev, WriteRowsEvent):
                    doc = {"table": table, "op": "c", "after": row["values"]}
                else:
                    doc = {"table": table, "op": "d", "before": row["values"]}
                out_bytes += len(json.dumps(doc, default=str))
                rows += 1
    finally:
        stream.close()
    print(rows)
    print(f"json bytes {out_bytes}", file=sys.stderr)


if __name__ == "__main__":
    main()
