"""The llm-audit-ingest deployment zip: ``python -m llm_audit_ingest.bundle [--out PATH]``.

The function's handler is ``llm_audit_ingest.handler.lambda_handler``: the zip holds that
module with its package marker, and the ``centralllm`` package beside it, tests left out.
boto3 comes with the Lambda runtime; Django is never needed. The zip is deterministic (sorted
entries, fixed timestamps and permissions): the same sources give the same bytes, so an
unchanged build is no update. The provisioning engine deploys it from memory.
"""

import argparse
import io
import sys
import zipfile
from pathlib import Path

import centralllm
import llm_audit_ingest

HANDLER = "llm_audit_ingest.handler.lambda_handler"
DEFAULT_OUT = Path("var") / "dist" / "llm-audit-ingest.zip"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def lambda_files() -> list[tuple[str, Path]]:
    """(name in the zip, source file), in zip order."""
    function = Path(llm_audit_ingest.__file__).parent
    files = [
        (f"llm_audit_ingest/{name}", function / name) for name in ("__init__.py", "handler.py")
    ]
    shared = Path(centralllm.__file__).parent
    for path in sorted(shared.rglob("*.py")):
        relative = path.relative_to(shared.parent)
        if "tests" not in relative.parts:
            files.append((relative.as_posix(), path))
    return files


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, path in lambda_files():
            entry = zipfile.ZipInfo(name, ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def write(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(zip_bytes())
    partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the llm-audit-ingest Lambda zip.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    out = write(parser.parse_args(argv).out)
    print(f"{out} ({out.stat().st_size} bytes, {len(lambda_files())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
