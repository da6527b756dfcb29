"""The ``llm-audit-ingest`` Lambda (``handler``), its deployment zip (``bundle``) and the local
stand-in that runs it from an SQS queue where no Lambda can run (``local``).

Lambda imports ``llm_audit_ingest.handler``; only that module and ``centralllm`` go in the zip.
"""
