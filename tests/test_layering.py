"""Imports run one way: every ``import`` / ``from`` in ``siamtrack/`` (lazy ones inside functions
included, relative ones resolved) goes to a lower layer of the table in docs/ARCHITECTURE.md, or
stays inside its own package. The table is read from the document, so the two cannot drift."""
from __future__ import annotations

import ast
import re
from pathlib import Path

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
    return found


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def back_edges(layers: dict[str, int]) -> list[str]:
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = unit_of(module_name(path))
        if src not in layers:
            problems.append(f"{path.relative_to(ROOT)}: '{src}' is not in the ARCHITECTURE.md layer table")
            continue
        for line, target in imports(path):
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


def test_a_back_edge_is_caught() -> None:
    """The checker itself: an upward import hidden in a function, relative, is found and ranks up."""
    layers = layer_table()
    path = PACKAGE / "tracking" / "tracker.py"
    found = imports(path, "def f():\n    from ..evaluation import benchmark\n")
    assert [t for _, t in found] == ["siamtrack.evaluation"]
    assert layers["evaluation"] > layers["tracking"]
