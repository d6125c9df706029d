"""CloudFormation helpers for tests/deploy_cloudformation.rs, run with the venv's python
($SAMEDAY_CACHE/venv, from scripts/prereqs.sh: boto3 and cfn-lint's YAML decoder).

    python cfn_stack.py json TEMPLATE
        The template as JSON on stdout (short-form tags such as !Ref become Ref/Fn::*).

    python cfn_stack.py create --endpoint URL --template FILE --stack NAME [--param K=V ...]
        Creates the stack through the CloudFormation API at URL (moto's server), waits for
        a final status, and prints one JSON report: the stack status and events, its
        resources and outputs, and what the services themselves say about the stream,
        queues, tables and state machine the stack reports. Exits 1 (with the report) when
        the stack did not reach CREATE_COMPLETE.
"""

import argparse
import json
import sys
import time


def template_json(path):
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches:
        raise SystemExit("cannot parse %s: %s" % (path, "; ".join(str(m) for m in matches)))
    return template


def client(service, endpoint):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def describe_resources(endpoint, resources):
    """What each service reports for the stack's data-plane resources (physical ids)."""
    out = {"streams": {}, "queues": {}, "tables": {}, "state_machines": {}, "ecs": {}}
    by_type = {}
    for r in resources:
        by_type.setdefault(r["ResourceType"], []).append(r)

    kinesis = client("kinesis", endpoint)
    for r in by_type.get("AWS::Kinesis::Stream", []):
        s = kinesis.describe_stream_summary(StreamName=r["PhysicalResourceId"])["StreamDescriptionSummary"]
        out["streams"][r["LogicalResourceId"]] = {
            "name": s["StreamName"],
            "status": s["StreamStatus"],
            "mode": s.get("StreamModeDetails", {}).get("StreamMode"),
            "retention_hours": s.get("RetentionPeriodHours"),
        }

    sqs = client("sqs", endpoint)
    for r in by_type.get("AWS::SQS::Queue", []):
        url = r["PhysicalResourceId"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        out["queues"][r["LogicalResourceId"]] = {"url": url, "attributes": attrs}

    ddb = client("dynamodb", endpoint)
    for r in by_type.get("AWS::DynamoDB::Table", []):
        t = ddb.describe_table(TableName=r["PhysicalResourceId"])["Table"]
        out["tables"][r["LogicalResourceId"]] = {
            "name": t["TableName"],
            "status": t["TableStatus"],
            "key_schema": t["KeySchema"],
            "attributes": t["AttributeDefinitions"],
            "billing_mode": t.get("BillingModeSummary", {}).get("BillingMode"),
        }

    sfn = client("stepfunctions", endpoint)
    for r in by_type.get("AWS::StepFunctions::StateMachine", []):
        m = sfn.describe_state_machine(stateMachineArn=r["PhysicalResourceId"])
        out["state_machines"][r["LogicalResourceId"]] = {
            "arn": m["stateMachineArn"],
            "name": m["name"],
            "type": m["type"],
            "definition": m["definition"],
        }

    ecs = client("ecs", endpoint)
    for r in by_type.get("AWS::ECS::TaskDefinition", []):
        td = ecs.describe_task_definition(taskDefinition=r["PhysicalResourceId"])["taskDefinition"]
        out["ecs"][r["LogicalResourceId"]] = {
            "family": td["family"],
            "containers": [c["name"] for c in td["containerDefinitions"]],
        }
    return out


def create(args):
    cfn = client("cloudformation", args.endpoint)
    with open(args.template) as f:
        body = f.read()
    params = []
    for p in args.param:
        key, _, value = p.partition("=")
        params.append({"ParameterKey": key, "ParameterValue": value})
    cfn.create_stack(StackName=args.stack, TemplateBody=body, Parameters=params,
                     Capabilities=["CAPABILITY_IAM"])
    deadline = time.monotonic() + 30
    while True:
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # moto lists the resource types it skipped (no CloudFormation support) without ids.
    listed = cfn.describe_stack_resources(StackName=args.stack)["StackResources"]
    resources = [r for r in listed if r.get("LogicalResourceId")]
    events = cfn.describe_stack_events(StackName=args.stack)["StackEvents"]
    report = {
        "status": stack["StackStatus"],
        "status_reason": stack.get("StackStatusReason"),
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        "resources": [
            {"logical_id": r["LogicalResourceId"], "type": r["ResourceType"],
             "physical_id": r["PhysicalResourceId"], "status": r["ResourceStatus"]}
            for r in resources
        ],
        "unidentified_resources": len(listed) - len(resources),
        "failed_events": [
            "%s %s: %s" % (e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason"))
            for e in events if e["ResourceStatus"].endswith("FAILED")
        ],
    }
    if stack["StackStatus"] == "CREATE_COMPLETE":
        report["described"] = describe_resources(args.endpoint, resources)
    json.dump(report, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
    return 0 if stack["StackStatus"] == "CREATE_COMPLETE" else 1


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    j = sub.add_parser("json")
    j.add_argument("template")
    c = sub.add_parser("create")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--template", required=True)
    c.add_argument("--stack", required=True)
    c.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    if args.command == "json":
        json.dump(template_json(args.template), sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    return create(args)


if __name__ == "__main__":
    sys.exit(main())
