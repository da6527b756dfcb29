"""`python -m devtools.build_lambda [--out PATH]`: the llm-audit-ingest deployment zip.

``handler.py`` at the root of the zip (the function's handler is ``handler.lambda_handler``)
and the ``centralllm`` package beside it, tests left out. boto3 comes with the Lambda
runtime; Django is never needed. The zip is deterministic (sorted entries, fixed timestamps
and permissions): the same sources give the same bytes, so an unchanged build is no update.
"""

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "lambda" / "llm_audit_ingest" / "handler.py"
PACKAGE = ROOT / "centralllm"
DEFAULT_OUT = ROOT / "var" / "dist" / "llm-audit-ingest.zip"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def lambda_files() -> list[tuple[str, Path]]:
    """(name in the zip, source file), in zip order."""
    files = [("handler.py", HANDLER)]
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if "tests" not in relative.parts:
            files.append((relative.as_posix(), path))
    return files


def build(out: Path = DEFAULT_OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in lambda_files():
            entry = zipfile.ZipInfo(name, ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the llm-audit-ingest Lambda zip.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    out = build(parser.parse_args(argv).out)
    print(f"{out} ({out.stat().st_size} bytes, {len(lambda_files())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
