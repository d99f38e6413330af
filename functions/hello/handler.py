"""The sample code function: deployed onto the python3.11 runtime by scripts/run, with no image build."""


def handle(event, context):
    name = event.query.get("name") or event.body.decode().strip() or "world"
    return {"statusCode": 200, "body": f"Hello, {name}!\n", "headers": {"Content-Type": "text/plain"}}
