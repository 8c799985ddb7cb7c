"""The house's floors: imports go downward only and never in a loop (docs/architecture.md, "Floors").

Floors, bottom up: kernels; ground (errors, units, files, documents, progress, config, device,
grid, parallel); data; science (every other module of ``ciml_ter``); stages; cli. A module may
import its own floor or lower ones. Among stages only ``pipeline`` and ``demo`` chain other stages. Every
import counts, including those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

from _support import REPO

PACKAGES = {"ciml_ter": REPO / "engine", "ciml_ter.kernels": REPO / "kernels"}
GROUND = {"ciml_ter", "ciml_ter.errors", "ciml_ter.units", "ciml_ter.files", "ciml_ter.documents",
          "ciml_ter.progress", "ciml_ter.config", "ciml_ter.device", "ciml_ter.grid", "ciml_ter.parallel"}
FLOORS = ("kernels", "ground", "data", "science", "stages", "cli")
CHAINING_STAGES = {"ciml_ter.stages.pipeline", "ciml_ter.stages.demo"}


def floor(module: str) -> str:
    if module == "ciml_ter.kernels" or module.startswith("ciml_ter.kernels."):
        return "kernels"
    if module in GROUND:
        return "ground"
    if module.startswith("ciml_ter.data"):
        return "data"
    if module.startswith("ciml_ter.stages"):
        return "stages"
    if module == "ciml_ter.cli":
        return "cli"
    return "science"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    found = {}
    for root_name, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if root_name == "ciml_ter" and parts and parts[0] == "kernels":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([root_name, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from X import y`` counts X.y when it is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_the_graph_sees_the_package():
    g = graph()
    assert {"ciml_ter.cli", "ciml_ter.kernels.trend",
        "ciml_ter.stages.train", "ciml_ter.training"} <= set(g)
    assert "ciml_ter.training" in g["ciml_ter.stages.train"]


def test_imports_only_go_downward():
    upward = []
    for name, targets in graph().items():
        for target in targets:
            if FLOORS.index(floor(target)) > FLOORS.index(floor(name)):
                upward.append(f"{name} ({floor(name)}) imports {target} ({floor(target)})")
            elif (floor(name) == floor(target) == "stages" and name not in CHAINING_STAGES
                  and target != "ciml_ter.stages"):
                upward.append(f"{name} imports the stage {target} (only pipeline and demo chain stages)")
    assert not upward, "\n".join(sorted(upward))


def find_cycles(g: dict[str, set[str]]) -> list[str]:
    """Each import loop found by a depth-first walk, as "a -> b -> a"."""
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(graph())
    assert not cycles, "\n".join(cycles)


def test_the_checker_catches_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "a.py").write_text("from ciml_ter.stages.x import y\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    known = {"ciml_ter.a", "ciml_ter.b", "ciml_ter.stages.x"}
    assert imports_of("ciml_ter.a", pkg / "a.py", known) == {"ciml_ter.stages.x"}
    assert imports_of("ciml_ter.b", pkg / "b.py", known) == {"ciml_ter.a"}
    assert FLOORS.index(floor("ciml_ter.stages.x")) > FLOORS.index(floor("ciml_ter.a"))
    assert find_cycles({"m.a": {"m.b"}, "m.b": {"m.c"}, "m.c": {"m.a"}}) == ["m.a -> m.b -> m.c -> m.a"]
    assert find_cycles({"m.a": {"m.b"}, "m.b": set()}) == []
