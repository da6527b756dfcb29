"""API Gateway keys, as the console shows them. Key values are never read here."""

from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws


def list_api_keys() -> tuple[list[dict], str]:
    """The account's API keys and an error message ('' when AWS answered)."""
    keys: list[dict] = []
    try:
        pages = aws.client("apigateway").get_paginator("get_api_keys").paginate()
        for page in pages:
            keys.extend(page.get("items", []))
    except (BotoCoreError, ClientError) as exc:
        return [], f"Could not list API keys: {exc}"
    return sorted(keys, key=lambda key: key.get("name", "")), ""
