#!/usr/bin/env python3
"""KPL aggregated Kinesis records read and written by AWS's own library (aws-kinesis-agg),
for sameday's interoperability test (tests/kpl_interop.rs). JSON on stdin and stdout, data
base64-encoded:

  kpl_interop.py deaggregate   [{"pk", "seq", "data"}]  ->  [{"pk", "seq", "sub", "data"}]
  kpl_interop.py aggregate     [{"pk", "data"}]         ->  [{"pk", "data"}]  (aggregated records)
"""
import base64
import json
import sys

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import deaggregate_records


def deaggregate(records):
    lambda_records = [
        {"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": r["seq"], "partitionKey": r["pk"],
                     "approximateArrivalTimestamp": 0, "data": r["data"]}}
        for r in records
    ]
    out = []
    for u in deaggregate_records(lambda_records):
        k = u["kinesis"]
        data = k["data"]
        out.append({"pk": k["partitionKey"], "seq": k["sequenceNumber"], "sub": k.get("subSequenceNumber"),
                    "data": data.decode() if isinstance(data, bytes) else data})
    return out


def aggregate(records):
    aggregator = RecordAggregator()
    out = []
    for r in records:
        full = aggregator.add_user_record(r["pk"], base64.b64decode(r["data"]))
        if full is not None:
            out.append(full)
    last = aggregator.clear_and_get()
    if last is not None:
        out.append(last)
    result = []
    for agg in out:
        pk, _ehk, data = agg.get_contents()
        result.append({"pk": pk, "data": base64.b64encode(data).decode()})
    return result


if __name__ == "__main__":
    mode = sys.argv[1]
    records = json.load(sys.stdin)
    json.dump(deaggregate(records) if mode == "deaggregate" else aggregate(records), sys.stdout)
