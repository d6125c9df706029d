"""Demo helper: create a Kinesis stream on the emulator, or read N records back from it."""
import json
import sys
import time

import boto3

kinesis = boto3.client("kinesis")


def create(name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(200):
        if kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            print(f"demo: stream {name} ACTIVE with {shards} shards")
            return
        time.sleep(0.05)
    sys.exit(f"stream {name} did not become ACTIVE")


def read(name: str, want: int) -> None:
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    iters = {s["ShardId"]: kinesis.get_shard_iterator(StreamName=name, ShardId=s["ShardId"],
                                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
             for s in shards}
    got = 0
    deadline = time.time() + 20
    while got < want and time.time() < deadline:
        for shard, it in list(iters.items()):
            out = kinesis.get_records(ShardIterator=it)
            iters[shard] = out["NextShardIterator"]
            for r in out["Records"]:
                env = json.loads(r["Data"])
                got += 1
                print(f"  [{shard} seq {r['SequenceNumber'][-6:]}] {env['op']:<6} {env['db']}.{env['table']} "
                      f"key={json.dumps(env['key'])} id={env['id']}")
                print(f"      before={json.dumps(env['before'])}")
                print(f"      after ={json.dumps(env['after'])}")
        time.sleep(0.2)
    if got < want:
        sys.exit(f"only {got} of {want} records arrived")


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create(sys.argv[2], int(sys.argv[3]))
    else:
        read(sys.argv[2], int(sys.argv[3]))
