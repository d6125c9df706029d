"""Smoke test of the local AWS emulators (run after scripts/prereqs.sh):

    .cache/venv/bin/python scripts/emulators_smoke.py [--limits]

Starts each wrapper in crates/testkit/emulators/ on a free 127.0.0.1 port, waits for
`LISTENING <port>`, exercises it with boto3 (us-east-1, dummy credentials) and prints
start-up times. --limits also probes kinesalite's size limits and resharding.
Exits non-zero on the first failure.
"""

import argparse
import os
import select
import subprocess
import sys
import time
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU = os.path.join(REPO, "crates", "testkit", "emulators")
CACHE = os.environ.get("SAMEDAY_CACHE", os.path.join(REPO, ".cache"))
VENV_PY = os.path.join(CACHE, "venv", "bin", "python")

CFG = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30)
CREDS = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def client(service, port):
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", config=CFG, **CREDS)


@contextmanager
def emulator(name, argv, first_call):
    env = dict(os.environ, SAMEDAY_CACHE=CACHE)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sys.stderr, env=env, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"{name}: no LISTENING line (got {line!r}, rc={proc.poll()})")
        port = int(line.split()[1])
        t_listen = (time.monotonic() - t0) * 1000
        first_call(port)
        t_first = (time.monotonic() - t0) * 1000
        print(f"{name}: port {port}, LISTENING after {t_listen:.0f} ms, first call ok after {t_first:.0f} ms")
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def wait_active(k, stream, timeout=10):
    t0 = time.monotonic()
    status = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
    first = status
    while status != "ACTIVE":
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{stream} still {status}")
        time.sleep(0.01)
        status = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
    return first, (time.monotonic() - t0) * 1000


def error_code(fn):
    try:
        fn()
        return "OK"
    except ClientError as e:
        return e.response["Error"]["Code"] + f" (HTTP {e.response['ResponseMetadata'].get('HTTPStatusCode')})"
    except Exception as e:  # e.g. connection reset on 413
        return type(e).__name__


def check_kinesalite(port, limits):
    k = client("kinesis", port)
    k.create_stream(StreamName="s1", ShardCount=2)
    first, ms = wait_active(k, "s1")
    print(f"  kinesis: status right after CreateStream={first}, ACTIVE after {ms:.0f} ms")
    recs = [{"Data": f"rec-{i}".encode(), "PartitionKey": f"pk-{i}"} for i in range(20)]
    r = k.put_records(StreamName="s1", Records=recs)
    assert r["FailedRecordCount"] == 0, r
    shards = k.list_shards(StreamName="s1")["Shards"]
    assert len(shards) == 2, shards
    got = 0
    for sh in shards:
        it = k.get_shard_iterator(StreamName="s1", ShardId=sh["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got += len(k.get_records(ShardIterator=it, Limit=100)["Records"])
    assert got == 20, got
    print(f"  kinesis: put_records 20 + get_records over 2 shards -> {got} records OK")
    if not limits:
        return
    mib = 1024 * 1024
    print("  limit PutRecord Data=1MiB, key 10 chars:",
          error_code(lambda: k.put_record(StreamName="s1", Data=b"x" * mib, PartitionKey="k" * 10)))
    print("  limit PutRecord Data=1MiB+1:",
          error_code(lambda: k.put_record(StreamName="s1", Data=b"x" * (mib + 1), PartitionKey="k")))
    big = [{"Data": b"x" * (mib - 100), "PartitionKey": f"k{i}"} for i in range(5)]
    big.append({"Data": b"y" * 200_000, "PartitionKey": "k6"})  # total > 5 MiB, body < 7 MiB
    print("  limit PutRecords total ~5.19 MiB:", error_code(lambda: k.put_records(StreamName="s1", Records=big)))
    huge = [{"Data": b"x" * (mib - 100), "PartitionKey": f"k{i}"} for i in range(6)]
    print("  limit PutRecords total ~6 MiB (body > 7 MiB as base64):",
          error_code(lambda: k.put_records(StreamName="s1", Records=huge)))
    n_ok = 0
    for _ in range(20):  # real Kinesis: 1 MiB/s or 1000 rec/s per shard
        if error_code(lambda: k.put_record(StreamName="s1", Data=b"z" * 600_000, PartitionKey="same")) == "OK":
            n_ok += 1
    print(f"  throughput: 20 x 600KB to one shard back to back -> {n_ok} OK (no ProvisionedThroughputExceeded)"
          if n_ok == 20 else f"  throughput: {20 - n_ok} rejected")
    # Resharding
    sh0 = shards[0]
    lo, hi = int(sh0["HashKeyRange"]["StartingHashKey"]), int(sh0["HashKeyRange"]["EndingHashKey"])
    k.split_shard(StreamName="s1", ShardToSplit=sh0["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
    first, ms = wait_active(k, "s1")
    after = k.list_shards(StreamName="s1")["Shards"]
    print(f"  SplitShard: status after={first}, ACTIVE after {ms:.0f} ms; ListShards -> "
          + ", ".join(f"{s['ShardId']}(parent={s.get('ParentShardId')}, "
                      f"closed={'EndingSequenceNumber' in s['SequenceNumberRange']})" for s in after))
    it = k.get_shard_iterator(StreamName="s1", ShardId=sh0["ShardId"],
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    pages = 0
    while it and pages < 50:
        r = k.get_records(ShardIterator=it, Limit=10000)
        pages += 1
        it = r.get("NextShardIterator")
        if "ChildShards" in r:
            print(f"  GetRecords on closed parent: ChildShards={[c['ShardId'] for c in r['ChildShards']]}")
    print(f"  GetRecords on closed parent: NextShardIterator=None after {pages} pages, "
          f"ChildShards present in last page: {'ChildShards' in r}")
    for kw in ({"ShardFilter": {"Type": "AT_LATEST"}}, {"MaxResults": 1}):
        n = len(k.list_shards(StreamName="s1", **kw)["Shards"])
        print(f"  ListShards {kw}: {n} shards returned (of 4, 3 open)")

def check_fauxqs(port):
    q = client("sqs", port)
    url = q.create_queue(QueueName="jobs.fifo",
                         Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"})["QueueUrl"]
    for i in range(3):
        q.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g1", MessageDeduplicationId=f"d{i}")
    q.send_message(QueueUrl=url, MessageBody="dup", MessageGroupId="g1", MessageDeduplicationId="d0")
    # fauxqs quirk: at most ONE message per message group per ReceiveMessage, and the group
    # stays locked until that message is deleted (real SQS may return several of a group).
    bodies = []
    for _ in range(10):
        msgs = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            bodies.append(m["Body"])
            q.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert bodies == ["m0", "m1", "m2"], bodies
    print(f"  sqs: FIFO queue {url}; send x3 + dedup'd dup, receive/delete loop -> {bodies} OK")


def check_moto(port):
    d = client("dynamodb", port)
    d.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    put = lambda v: d.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"N": str(v)}},
                               ConditionExpression="attribute_not_exists(pk)")
    put(1)
    assert error_code(lambda: put(2)).startswith("ConditionalCheckFailedException")
    item = d.get_item(TableName="t", Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]
    assert item["v"]["N"] == "1", item
    print("  dynamodb: create_table, conditional put (2nd -> ConditionalCheckFailedException), get OK")
    s = client("stepfunctions", port)
    definition = '{"StartAt":"P","States":{"P":{"Type":"Pass","Result":{"ok":true},"End":true}}}'
    arn = s.create_state_machine(name="sm", definition=definition,
                                 roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    ex = s.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    desc = s.describe_execution(executionArn=ex)
    print(f"  stepfunctions: create_state_machine {arn}, execution status {desc['status']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limits", action="store_true")
    args = ap.parse_args()
    node = os.environ.get("NODE", "node")
    for svc in ("kinesis", "sqs", "dynamodb", "stepfunctions"):  # keep botocore's load time out of the timings
        client(svc, 1)
    with emulator("kinesalite", [node, os.path.join(EMU, "kinesalite.js"), "--port", "0"],
                  lambda p: client("kinesis", p).list_streams()) as port:
        check_kinesalite(port, args.limits)
    with emulator("fauxqs", [node, os.path.join(EMU, "fauxqs.js"), "--port", "0"],
                  lambda p: client("sqs", p).list_queues()) as port:
        check_fauxqs(port)
    with emulator("moto", [VENV_PY, os.path.join(EMU, "moto_server.py"), "--port", "0"],
                  lambda p: client("dynamodb", p).list_tables()) as port:
        check_moto(port)
    print("emulators smoke: all OK")


if __name__ == "__main__":
    main()
