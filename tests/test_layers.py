"""The package layers of docs/architecture.md: no module imports from a layer above its own.

Every import is counted, those inside functions and under ``TYPE_CHECKING`` too: a lazy import
is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"

LAYERS: list[tuple[str, ...]] = [
    ("files", "status", "faults", "console", "scoped", "text", "interrupts"),
    ("models", "audio", "tracking"),
    ("scoring",),
    ("diagnostics",),
    ("training",),
    ("recipes",),
    ("runs",),
    ("results",),
    ("search", "inference"),
    ("report",),
    ("commands", "cli"),
]
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def top_part(module: str) -> str | None:
    """``harness.training.trainer`` -> ``training``; None outside the harness."""
    parts = module.split(".")
    return parts[1] if parts[0] == "harness" and len(parts) > 1 else None


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "harness":
                found += [f"harness.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def test_every_module_sits_in_a_layer() -> None:
    parts = {
        p.stem if p.is_file() else p.name for p in HARNESS.iterdir() if p.name != "__init__.py"
    }
    parts = {p for p in parts if not p.startswith("__")}
    assert parts == set(LEVEL), f"add {sorted(parts - set(LEVEL))} to LAYERS"


def test_no_import_runs_up_a_layer() -> None:
    upward = []
    for path in sorted(HARNESS.rglob("*.py")):
        module = ".".join(path.relative_to(HARNESS.parent).with_suffix("").parts)
        own = LEVEL[top_part(module) or "cli"] if module != "harness.__init__" else 0
        for target in imports(path):
            part = top_part(target)
            if part is not None and LEVEL[part] > own:
                upward.append(f"{path.relative_to(HARNESS.parent)} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_command_imports_another() -> None:
    crossing = []
    for path in sorted((HARNESS / "commands").glob("*.py")):
        for target in imports(path):
            if target.startswith("harness.commands.") and path.name != "__init__.py":
                crossing.append(f"{path.name} imports {target}")
    assert not crossing, "\n".join(crossing)
