"""The sample function as an image (python mode, event style); functions/hello is the same as code."""


def handle(event, context):
    name = event.query.get("name") or event.body.decode().strip() or "world"
    return {"statusCode": 200, "body": f"Hello, {name}!\n", "headers": {"Content-Type": "text/plain"}}
