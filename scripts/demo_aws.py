"""Demo helper for the AWS emulators (boto3; endpoints from AWS_ENDPOINT_URL_<SERVICE>).

    demo_aws.py create-stream NAME SHARDS
    demo_aws.py read-stream NAME N           (prints N records from TRIM_HORIZON)
    demo_aws.py create-queue NAME            (FIFO when NAME ends in .fifo; prints the URL)
    demo_aws.py receive QUEUE_URL N          (prints N messages as they arrive, deletes them)
    demo_aws.py create-fifo-with-dlq NAME    (NAME.fifo with NAME-dlq.fifo as redrive target; prints the URL)
    demo_aws.py create-state-machine NAME FILE   (Standard; prints the ARN)
    demo_aws.py executions ARN               (name, status, start and stop of every execution)
"""
import json
import sys
import time

import boto3


def create_stream(name: str, shards: int) -> None:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(200):
        if kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            print(f"demo: stream {name} ACTIVE with {shards} shards")
            return
        time.sleep(0.05)
    sys.exit(f"stream {name} did not become ACTIVE")


def create_queue(name: str) -> None:
    sqs = boto3.client("sqs")
    attrs = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    print(sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"])


def create_fifo_with_dlq(name: str) -> None:
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={
        "FifoQueue": "true", "VisibilityTimeout": "60", "RedrivePolicy": redrive})["QueueUrl"]
    print(url)


def create_state_machine(name: str, path: str) -> None:
    sfn = boto3.client("stepfunctions")
    with open(path) as f:
        definition = f.read()
    arn = sfn.create_state_machine(name=name, definition=definition, type="STANDARD",
                                   roleArn="arn:aws:iam::123456789012:role/sameday-demo")["stateMachineArn"]
    print(arn)


def executions(arn: str) -> None:
    sfn = boto3.client("stepfunctions")
    rows = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
        rows += page["executions"]
    counts = {}
    for e in sorted(rows, key=lambda e: e["startDate"]):
        counts[e["status"]] = counts.get(e["status"], 0) + 1
        stop = e.get("stopDate")
        print(f"  {e['status']:<9} {e['name']}  started {e['startDate']:%H:%M:%S}"
              + (f", ended {stop:%H:%M:%S}" if stop else ""))
    print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f" (total {len(rows)})")


def read_stream(name: str, want: int) -> None:
    kinesis = boto3.client("kinesis")
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


def receive(url: str, want: int) -> None:
    sqs = boto3.client("sqs")
    got = 0
    deadline = time.time() + 30
    while got < want and time.time() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageSystemAttributeNames=["MessageGroupId"])
        for m in out.get("Messages", []):
            env = json.loads(m["Body"])
            got += 1
            due = lambda img: img and img.get("due_at")
            print(f"  [group {m['Attributes']['MessageGroupId']}] {env['op']:<6} id={env['id']} "
                  f"due {due(env['before'])} -> {due(env['after'])}")
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    if got < want:
        sys.exit(f"only {got} of {want} messages arrived")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "create-stream":
        create_stream(sys.argv[2], int(sys.argv[3]))
    elif cmd == "create-queue":
        create_queue(sys.argv[2])
    elif cmd == "create-fifo-with-dlq":
        create_fifo_with_dlq(sys.argv[2])
    elif cmd == "create-state-machine":
        create_state_machine(sys.argv[2], sys.argv[3])
    elif cmd == "executions":
        executions(sys.argv[2])
    elif cmd == "read-stream":
        read_stream(sys.argv[2], int(sys.argv[3]))
    elif cmd == "receive":
        receive(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")
