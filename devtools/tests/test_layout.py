"""What ships stands apart from what develops it: no product module imports devtools."""

import ast

from devtools.services import ROOT

PRODUCT = ("console", "provisioning", "audit_explorer", "centralllm", "inference", "lambda")


def _imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_product_module_imports_devtools():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in PRODUCT
        for path in (ROOT / folder).rglob("*.py")
        if "tests" not in path.relative_to(ROOT).parts
        and any(name.split(".")[0] == "devtools" for name in _imported_modules(path))
    ]
    assert offenders == []


def test_the_console_image_copies_no_devtools():
    copies = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY")
    ]
    assert copies and not [line for line in copies if "devtools" in line]
