"""The ``llm-audit-ingest`` Lambda: S3 ObjectCreated events from the audit bucket's ``logs/``.

The logic lives in ``centralllm.audit.ingest``, shipped beside this package in the zip
(``python -m llm_audit_ingest.bundle``). Lambda's own retries, then the DLQ, take an event
whose record is malformed or unreadable: the exception message says which and why.
"""

from centralllm.audit import redaction
from centralllm.audit.ingest import handle_s3_event

# A bad REDACTION_RULES fails the Lambda's start with the reason, not every record one by one.
redaction.rules_from_env()


def lambda_handler(event: dict, context: object) -> dict:
    return handle_s3_event(event)
