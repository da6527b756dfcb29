"""The llm-audit-ingest deployment zip: ``python -m llm_audit_ingest.bundle [--out PATH]``.

The function's handler is ``llm_audit_ingest.handler.lambda_handler``: the zip holds that
module with its package marker, and the ``centralllm`` package beside it, tests left out.
boto3 comes with the Lambda runtime; Django is never needed. RE2 (``google-re2``, for custom
redaction patterns) is compiled code: the zip holds its build for the Lambda's Python and
architecture, from the wheel PyPI publishes for them, fetched once into ``var/wheels``
(``make install`` does; the console image has it). The zip is deterministic (sorted
entries, fixed timestamps and permissions): the same sources give the same bytes, so an
unchanged build is no update. The provisioning engine deploys it from memory.
"""

import argparse
import io
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import centralllm
import llm_audit_ingest

HANDLER = "llm_audit_ingest.handler.lambda_handler"
RUNTIME = "python3.12"  # Lambda's, on x86_64 (its default architecture)
DEFAULT_OUT = Path("var") / "dist" / "llm-audit-ingest.zip"
WHEELS = Path("var") / "wheels"  # beside DEFAULT_OUT, under the working directory
RE2 = "google-re2"
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


def re2_wheel() -> Path:
    """The RE2 wheel for the Lambda's Python (the version the console runs), fetched from PyPI
    the first time."""
    python = RUNTIME.removeprefix("python")
    abi = "cp" + python.replace(".", "")
    pinned = version(RE2)
    pattern = f"google_re2-{pinned}-*-{abi}-{abi}-manylinux*x86_64*.whl"
    found = sorted(WHEELS.glob(pattern))
    if not found:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--only-binary", ":all:", "--platform", "manylinux_2_28_x86_64"),
                *("--python-version", python, "--implementation", "cp", "--abi", abi),
                *("--dest", str(WHEELS), f"{RE2}=={pinned}"),
            ],
            check=True,
        )
        found = sorted(WHEELS.glob(pattern))
    return found[-1]


def re2_files() -> list[tuple[str, bytes]]:
    """The ``re2`` package out of its wheel: (name in the zip, bytes)."""
    with zipfile.ZipFile(re2_wheel()) as wheel:
        return [
            (name, wheel.read(name))
            for name in sorted(wheel.namelist())
            if name.startswith("re2/") and not name.endswith("/")
        ]


def zip_bytes() -> bytes:
    files = [(name, path.read_bytes()) for name, path in lambda_files()] + re2_files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            entry = zipfile.ZipInfo(name, ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
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
    files = len(lambda_files()) + len(re2_files())
    print(f"{out} ({out.stat().st_size} bytes, {files} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
