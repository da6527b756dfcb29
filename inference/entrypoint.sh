#!/bin/sh
# Start vLLM's OpenAI server with the audit middleware, and the reader of its queue; arguments
# are passed on to `vllm serve`.
#
# Audit records name the image tag and task definition revision that served them. On ECS the
# task learns both from its metadata endpoint, unless IMAGE_TAG / TASK_DEFINITION_REVISION are
# set already (see centralllm.audit.contract.deployment_from_env).
set -e

if [ -n "$ECS_CONTAINER_METADATA_URI_V4" ]; then
  eval "$(python3 - <<'PY' || true
import json, os, shlex, urllib.request

def get(path):
    url = os.environ["ECS_CONTAINER_METADATA_URI_V4"] + path
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)

try:
    task, container = get("/task"), get("")
except (OSError, ValueError) as exc:
    raise SystemExit(f"entrypoint: no ECS metadata ({exc}); deployment fields stay unset")
found = {
    "TASK_DEFINITION_REVISION": f"{task['Family']}:{task['Revision']}",
    "IMAGE_TAG": container["Image"].rpartition(":")[2],
}
for name, value in found.items():
    if not os.environ.get(name):
        print(f"export {name}={shlex.quote(value)}")
PY
)"
fi

# vLLM's queue for scaling, one reader per task beside the server (inference/vllm_queue.py): it
# stops once the server, which it becomes the child of below, is gone.
python3 -m inference.vllm_queue http://127.0.0.1:8000/metrics &

exec vllm serve "$MODEL_ID" \
  --served-model-name "$SERVED_MODEL_NAME" \
  --host 0.0.0.0 --port 8000 \
  --middleware inference.middleware.AuditMiddleware \
  --enable-force-include-usage \
  "$@"
