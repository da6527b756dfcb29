import json
import subprocess
import sys
import zipfile

from llm_audit_ingest import bundle


def build(out) -> bytes:
    subprocess.run(
        [sys.executable, "-m", "llm_audit_ingest.bundle", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def test_the_zip_is_deterministic_and_holds_handler_and_package(tmp_path):
    first = build(tmp_path / "a.zip")
    second = build(tmp_path / "b.zip")

    assert first == second == bundle.zip_bytes()
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert names[:2] == ["llm_audit_ingest/__init__.py", "llm_audit_ingest/handler.py"]
    assert "centralllm/audit/contract.py" in names
    assert "centralllm/aws.py" in names
    assert not [name for name in names if "/tests/" in name]
    # RE2 as the Lambda's Python loads it: its compiled part is for that Python.
    compiled = [name for name in names if not name.endswith(".py")]
    assert compiled == ["re2/_re2.cpython-312-x86_64-linux-gnu.so"]
    assert bundle.RUNTIME == "python3.12"
    # The local stand-in and the zip builder run in the console, never in Lambda.
    assert not {"llm_audit_ingest/local.py", "llm_audit_ingest/bundle.py"} & set(names)


def test_the_handler_runs_from_the_unpacked_zip_without_django(tmp_path):
    build(tmp_path / "function.zip")
    zipfile.ZipFile(tmp_path / "function.zip").extractall(tmp_path / "task")
    module, _, function = bundle.HANDLER.rpartition(".")
    script = (
        f"import importlib, json, sys; handler = importlib.import_module({module!r}); "
        f"result = handler.{function}({{'Event': 's3:TestEvent'}}, None); "
        "print(json.dumps({'result': result, 'django': 'django' in sys.modules, "
        "'files': [handler.__file__, sys.modules['centralllm'].__file__]}))"
    )

    # As Lambda runs it: the task root first on the path, the working directory elsewhere.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path / 'task')!r}); " + script,
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )

    report = json.loads(done.stdout.splitlines()[-1])
    assert report["result"] == {"ingested": 0, "duplicates": 0, "ignored": 1}
    assert report["django"] is False
    assert all(path.startswith(str(tmp_path / "task")) for path in report["files"])
