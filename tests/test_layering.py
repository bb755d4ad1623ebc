"""Imports run one way: every ``import`` / ``from`` in ``siamtrack/`` (lazy ones inside functions
included, relative ones resolved) goes to a lower layer of the table in docs/ARCHITECTURE.md, or
stays inside its own package. The table is read from the document, so the two cannot drift."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "siamtrack"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def layer_table() -> dict[str, int]:
    """``{unit: layer}`` from the ``| layer | units | ...`` table under "Layers" in ARCHITECTURE.md."""
    text = DOC.read_text(encoding="utf-8")
    layers: dict[str, int] = {}
    for m in re.finditer(r"^\|\s*(\d+)\s*\|([^|]+)\|", text, re.M):
        for unit in m.group(2).replace("`", "").split(","):
            if unit.strip():
                layers[unit.strip()] = int(m.group(1))
    return layers


def unit_of(module: str) -> str:
    """``siamtrack.deploy.runtime`` -> ``deploy``; ``siamtrack`` -> ``siamtrack`` (the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "siamtrack"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every siamtrack import in ``path`` (or ``text`` read as that
    file), at any depth: module level, inside functions, under ``if TYPE_CHECKING``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text if text is not None else path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "siamtrack"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "siamtrack":
                continue
            # ``from siamtrack import weights`` imports a module of the root: that module is the target
            found += [(node.lineno, f"{target}.{a.name}" if target == "siamtrack" and _is_module(a.name)
                       else target) for a in node.names]
        elif isinstance(node, ast.Call) and _call_name(node) in ("import_module", "__import__") and node.args:
            arg = node.args[0]  # importlib.import_module("siamtrack.x") / (".x", __name__): a string import
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                target = _resolve(arg.value, name if path.name == "__init__.py" else package)
                if target.split(".")[0] == "siamtrack":
                    found.append((node.lineno, target))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            # a module named in a string ("siamtrack.evaluation.cli" in a plugin list) is imported later
            if _is_module_path(node.value):
                found.append((node.lineno, node.value))
    return sorted(set(found))  # a string import's argument is also a module string


MODULE_STRING = re.compile(r"^siamtrack(\.[A-Za-z_]\w*)+$")


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _resolve(text: str, package: str) -> str:
    """``".tracker"`` in package ``siamtrack.tracking`` -> ``siamtrack.tracking.tracker``."""
    if not text.startswith("."):
        return text
    level = len(text) - len(text.lstrip("."))
    base = package.split(".")
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([text.lstrip(".")] if text.lstrip(".") else []))


def _is_module_path(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def back_edges(layers: dict[str, int], sources: dict[Path, str] | None = None) -> list[str]:
    """Every import to the same or a higher layer in the package (or in ``sources``: path -> text,
    read as those files, so the checker itself can be tested)."""
    problems: list[str] = []
    files = sources if sources is not None else {p: None for p in sorted(PACKAGE.rglob("*.py"))}
    for path, text in files.items():
        src = unit_of(module_name(path))
        if src not in layers:
            problems.append(f"{path.relative_to(ROOT)}: '{src}' is not in the ARCHITECTURE.md layer table")
            continue
        for line, target in imports(path, text):
            dst = unit_of(target)
            if dst == src:
                continue
            if dst not in layers:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {target}, not in the layer table")
            elif layers[dst] >= layers[src]:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {src} (layer {layers[src]}) imports "
                                f"{target} ({dst}, layer {layers[dst]}): imports must go to a lower layer")
    return problems


def test_the_table_names_every_module_once() -> None:
    layers = layer_table()
    assert layers, "no layer table found in docs/ARCHITECTURE.md"
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units <= set(layers), f"modules missing from the table: {sorted(units - set(layers))}"
    assert set(layers) <= units, f"table entries with no module: {sorted(set(layers) - units)}"


def test_imports_run_one_way() -> None:
    problems = back_edges(layer_table())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("code, target", [
    ("def f():\n    from ..evaluation import benchmark\n", "siamtrack.evaluation"),
    ("import importlib\nm = importlib.import_module('siamtrack.evaluation.speed')\n", "siamtrack.evaluation.speed"),
    ("from importlib import import_module\nm = import_module('..training', __package__)\n", "siamtrack.training"),
    ("m = __import__('siamtrack.cli')\n", "siamtrack.cli"),
    ("PLUGINS = ['siamtrack.pipeline']\n", "siamtrack.pipeline"),
])
def test_back_edges_catches_every_way_of_importing_upwards(code, target) -> None:
    """``back_edges`` (what test_imports_run_one_way runs), on a planted upward import in tracker.py."""
    layers = layer_table()
    path = PACKAGE / "tracking" / "tracker.py"
    problems = back_edges(layers, {path: code})
    assert len(problems) == 1 and f"imports {target} " in problems[0], problems
    assert back_edges(layers, {path: "from ..models import geometry\nimport importlib\n"}) == []
