#!/usr/bin/env python3
"""The AWS side of the scale-out tests, against a local moto server (boto3 and deltalake).

    aws_peer.py ENDPOINT create-queue NAME VISIBILITY_SECONDS [MAX_MESSAGE_BYTES]  -> queue URL
    aws_peer.py ENDPOINT create-bucket NAME
    aws_peer.py ENDPOINT queue-depth NAME                       -> visible + in-flight messages
    aws_peer.py ENDPOINT list-keys BUCKET PREFIX                -> JSON list of keys
    aws_peer.py ENDPOINT read-delta S3_URI                      -> JSON {"count", "version", "rows"}
    aws_peer.py ENDPOINT put-if-absent BUCKET KEY               -> "created" or "precondition-failed"
    aws_peer.py ENDPOINT put-file BUCKET KEY PATH               (uploads a local file)

Credentials come from the environment (AWS_ACCESS_KEY_ID=testing etc.), as for the binaries.
"""
import json
import os
import sys

import boto3
import botocore.exceptions

endpoint, command, *args = sys.argv[1:]
region = os.environ.get("AWS_REGION", "us-east-1")


def client(service):
    return boto3.client(service, endpoint_url=endpoint, region_name=region)


if command == "create-queue":
    name, visibility, *max_bytes = args
    attributes = {"VisibilityTimeout": visibility}
    if max_bytes:
        attributes["MaximumMessageSize"] = max_bytes[0]
    url = client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    print(url)
elif command == "create-bucket":
    client("s3").create_bucket(Bucket=args[0])
elif command == "queue-depth":
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=args[0])["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
elif command == "list-keys":
    bucket, prefix = args
    out = client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    print(json.dumps(sorted(o["Key"] for o in out.get("Contents", []))))
elif command == "put-if-absent":
    bucket, key = args
    try:
        client("s3").put_object(Bucket=bucket, Key=key, Body=b"{}", IfNoneMatch="*")
        print("created")
    except botocore.exceptions.ClientError as e:
        code = e.response["Error"]["Code"]
        print("precondition-failed" if code in ("PreconditionFailed", "412") else code)
elif command == "put-file":
    bucket, key, path = args
    with open(path, "rb") as f:
        client("s3").put_object(Bucket=bucket, Key=key, Body=f.read())
elif command == "read-delta":
    import deltalake

    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    dt = deltalake.DeltaTable(args[0], storage_options=options)
    import pyarrow as pa

    # deltalake's query engine reads deletion vectors; its pyarrow dataset path refuses them.
    query = deltalake.QueryBuilder().register("t", dt).execute("SELECT * FROM t")
    rows = pa.table(query.read_all()).to_pylist()
    print(json.dumps({"count": len(rows), "version": dt.version(), "rows": rows}, default=str))
    sys.stdout.flush()
    os._exit(0)
else:
    sys.exit(f"unknown command {command}")
