"""inference/: the templates render with the agreed placeholders and do what they must."""

import json
import os
import re
import shutil
import string
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from centralllm import aws
from centralllm.audit import contract

INFERENCE = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
PLACEHOLDERS = {
    "AccountId": ACCOUNT,
    "Region": "eu-central-1",
    "AuditBucket": "central-llm-audit",
    "RawBucket": "central-llm-audit-raw",
    "EcrRepository": "mistral8b-vllm",
    "ImageUri": f"{ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/mistral8b-vllm:0123abc",
    "TaskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ecsTaskRole",
    "ExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole",
    "LogGroup": "/ecs/central-llm-service",
    "ModelId": "mistralai/Ministral-8B-Instruct-2410",
    "ServedModelName": "ministral-8b-instruct",
    "HfTokenSecretArn": f"arn:aws:secretsmanager:eu-central-1:{ACCOUNT}:secret:hf-token",
    "GatewaySecretArn": f"arn:aws:secretsmanager:eu-central-1:{ACCOUNT}:secret:"
    "central-llm/gateway-secret-AbCdEf",
    "EnvironmentName": "staging",
}


def render(name: str) -> str:
    return string.Template((INFERENCE / name).read_text()).substitute(PLACEHOLDERS)


def test_the_task_definition_registers_with_ecs():
    definition = json.loads(render("ecs-task-definition.json"))
    definition["family"] += f"-{uuid.uuid4().hex[:8]}"
    registered = aws.client("ecs").register_task_definition(**definition)["taskDefinition"]

    (container,) = registered["containerDefinitions"]
    assert container["image"] == PLACEHOLDERS["ImageUri"]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert container["portMappings"][0]["containerPort"] == 8000
    assert "/health" in " ".join(container["healthCheck"]["command"])
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment["AUDIT_BUCKET"] == "central-llm-audit"
    assert environment["RAW_BUCKET"] == "central-llm-audit-raw"
    assert environment["SERVED_MODEL_NAME"] == "ministral-8b-instruct"
    assert environment["AUDIT_ENVIRONMENT"] == "staging"  # the CloudWatch metrics' dimension
    # The gateway's secret, which the middleware compares with x-llm-gateway-secret.
    assert sorted(container["secrets"], key=lambda item: item["name"]) == [
        {"name": contract.GATEWAY_SECRET_ENV, "valueFrom": PLACEHOLDERS["GatewaySecretArn"]},
        {"name": "HF_TOKEN", "valueFrom": PLACEHOLDERS["HfTokenSecretArn"]},
    ]
    assert "HF_TOKEN" not in environment and contract.GATEWAY_SECRET_ENV not in environment
    assert registered["requiresCompatibilities"] == ["EC2"]


def test_the_audit_writer_policy_puts_records_and_reads_only_what_it_needs():
    """A write-once PUT refused (412) is compared with the object there: records and raw
    bodies are read back too; the attribution bindings are read."""
    document = render("ecs-task-audit-writer.json")
    aws.client("iam").create_policy(
        PolicyName=f"ecs-task-audit-writer-{uuid.uuid4().hex[:8]}", PolicyDocument=document
    )
    statements = json.loads(document)["Statement"]
    granted = {
        (s["Effect"], action, s["Resource"])
        for s in statements
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert granted == {
        ("Allow", "s3:PutObject", "arn:aws:s3:::central-llm-audit/logs/*"),
        ("Allow", "s3:GetObject", "arn:aws:s3:::central-llm-audit/logs/*"),
        ("Allow", "s3:PutObject", "arn:aws:s3:::central-llm-audit-raw/raw/*"),
        ("Allow", "s3:GetObject", "arn:aws:s3:::central-llm-audit-raw/raw/*"),
        ("Allow", "s3:GetObject", f"arn:aws:s3:::central-llm-audit/{contract.ATTRIBUTION_KEY}"),
    }


def test_the_buildspec_pushes_the_commit_and_names_the_task_container(tmp_path):
    buildspec = yaml.safe_load(render("buildspec.yml"))
    commands = [command for phase in buildspec["phases"].values() for command in phase["commands"]]
    script = "\n".join(command for command in commands if not command.startswith("aws ecr"))
    script = script.replace("docker ", "echo docker ")
    result = subprocess.run(
        ["sh", "-ec", script],
        cwd=tmp_path,
        env={
            **os.environ,
            **buildspec["env"]["variables"],
            "CODEBUILD_RESOLVED_SOURCE_VERSION": "0123abc",
        },
        capture_output=True,
        text=True,
        check=True,
    )

    uri = f"{ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/mistral8b-vllm:0123abc"
    assert f"docker build --file inference/Dockerfile --tag {uri} ." in result.stdout
    assert f"docker push {uri}" in result.stdout
    definitions = json.loads((tmp_path / "imagedefinitions.json").read_text())
    task_container = json.loads(render("ecs-task-definition.json"))["containerDefinitions"][0]
    assert definitions == [{"name": task_container["name"], "imageUri": uri}]
    assert buildspec["artifacts"]["files"] == ["imagedefinitions.json"]


def test_the_dockerfile_is_pinned_and_holds_no_secret():
    dockerfile = (INFERENCE / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if not line.startswith("#")]
    assert re.search(r"^FROM vllm/vllm-openai:v\d+\.\d+\.\d+$", dockerfile, re.MULTILINE)
    secret = re.compile(r"HF_TOKEN|HUGGING_FACE_HUB_TOKEN|hf_[A-Za-z0-9]{20,}")
    assert not [line for line in instructions if secret.search(line)]
    assert "$" not in dockerfile  # used as is: nothing for a template renderer to touch


class _Metadata(BaseHTTPRequestHandler):
    """ECS's task metadata endpoint (v4): the task, and the container itself."""

    answers = {
        "/v4/task": {"Family": "central-llm-service", "Revision": "42"},
        "/v4": {"Image": "123.dkr.ecr.eu-central-1.amazonaws.com/mistral8b-vllm:0123abc"},
    }

    def do_GET(self):
        body = json.dumps(self.answers[self.path]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_entrypoint_serves_the_model_with_the_middleware(tmp_path):
    fake_vllm = tmp_path / "vllm"
    fake_vllm.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > args\n'
        'echo "$IMAGE_TAG $TASK_DEFINITION_REVISION" > deployment\n'
    )
    fake_vllm.chmod(0o755)
    # python3 as it is, but for the queue reader, which says how it was started.
    python3 = tmp_path / "python3"
    python3.write_text(
        '#!/bin/sh\nif [ "$2" = inference.vllm_queue ]; then echo "$@" > reader.tmp;'
        f' mv reader.tmp reader; exit; fi\nexec {shutil.which("python3")} "$@"\n'
    )
    python3.chmod(0o755)
    metadata = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=metadata.serve_forever, daemon=True).start()
    try:
        subprocess.run(
            ["sh", str(INFERENCE / "entrypoint.sh"), "--max-model-len", "256"],
            cwd=tmp_path,
            env={
                **os.environ,
                "PATH": f"{tmp_path}:{os.environ['PATH']}",
                "MODEL_ID": "mistralai/Ministral-8B-Instruct-2410",
                "SERVED_MODEL_NAME": "ministral-8b-instruct",
                "ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:{metadata.server_port}/v4",
            },
            check=True,
        )
    finally:
        metadata.shutdown()

    args = (tmp_path / "args").read_text().split()
    assert args[:2] == ["serve", "mistralai/Ministral-8B-Instruct-2410"]
    assert args[args.index("--middleware") + 1] == "inference.middleware.AuditMiddleware"
    assert args[args.index("--served-model-name") + 1] == "ministral-8b-instruct"
    assert args[-2:] == ["--max-model-len", "256"]
    assert (tmp_path / "deployment").read_text().split() == ["0123abc", "central-llm-service:42"]
    # The reader of vLLM's queue, in the background beside the server, on the server's port.
    deadline = time.monotonic() + 10
    while not (tmp_path / "reader").exists():
        assert time.monotonic() < deadline, "the entrypoint started no queue reader"
        time.sleep(0.05)
    reader = (tmp_path / "reader").read_text().split()
    assert reader == ["-m", "inference.vllm_queue", "http://127.0.0.1:8000/metrics"]
