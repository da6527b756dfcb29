"""The apps form layers: each imports only the ones below it, so no two import each other.

Bottom to top: the audit contract and AWS helpers (``centralllm``, no Django), ``core`` (the
action log, permissions, refusals), ``provisioning``, ``costs``, ``audit_explorer``,
``api_access``, and ``console``, the project shell. A lower layer that needs a higher one's
behaviour offers a registry the higher one fills from its ``AppConfig.ready()`` (run kinds,
for one).
"""

import ast
from pathlib import Path

from django.conf import settings

LAYERS = ["centralllm", "core", "provisioning", "costs", "audit_explorer", "api_access", "console"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def _arrows() -> set[tuple[str, str, str]]:
    """(importer, imported, file) for every import between two apps, tests aside."""
    root = Path(settings.BASE_DIR)
    return {
        (app, imported, str(path.relative_to(root)))
        for app in LAYERS
        for path in (root / app).rglob("*.py")
        if not {"tests", "migrations"} & set(path.parts)
        for imported in _imports(path) - {app}
    }


def test_every_import_between_apps_points_down():
    upward = sorted(
        f"{path}: {importer} imports {imported}"
        for importer, imported, path in _arrows()
        if LAYERS.index(imported) > LAYERS.index(importer)
    )

    assert not upward


def test_the_walk_sees_the_imports_it_checks():
    arrows = {(importer, imported) for importer, imported, _ in _arrows()}

    assert {
        ("provisioning", "core"),
        ("console", "provisioning"),
        ("costs", "provisioning"),
    } <= arrows
