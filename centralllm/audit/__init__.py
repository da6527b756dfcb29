"""The audit pipeline's contract: the record, the DynamoDB item and its rollups, the ingest.

Plain Python and boto3 only: the ``llm-audit-ingest`` Lambda ships this package as is.
"""
