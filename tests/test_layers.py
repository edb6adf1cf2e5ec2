"""The house is one-way: the import graph of scaling/ (function-level imports included) follows the layer
table in the package docstring, without circles; planning and validation never load jax."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import scaling

from .conftest import ROOT

PACKAGE = ROOT / "scaling"


def layer_table() -> dict[str, int]:
    """Module (``scaling.x``) -> layer index, from the docstring table under 'layer     modules'."""
    lines = scaling.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["layer", "modules"])
    table = {}
    for index, line in enumerate(lines[start + 1 :]):
        if not line.strip():
            break
        _, modules = line.split(None, 1)
        table.update({f"scaling.{m.strip()}": index for m in modules.split(",")})
    return table


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the scaling modules it imports anywhere in its body (importing a module of another
    package also runs that package's __init__, so the package counts too)."""
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package, level - 1 packages up
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
        resolved = set()
        for t in targets:
            if not t.startswith("scaling"):
                continue
            while t not in mods:
                t = t.rsplit(".", 1)[0]
            resolved.add(t)
            parent = t.rsplit(".", 1)[0]
            if t.count(".") > 1 and not name.startswith(parent):  # scaling.pkg.mod from outside pkg
                resolved.add(parent)
        graph[name] = resolved - {name, "scaling"}
    return graph


def layer_of(module: str, table: dict[str, int]) -> int:
    while module not in table:  # scaling.tasks.base belongs to scaling.tasks
        assert "." in module.removeprefix("scaling."), f"{module} is in no layer of the package docstring"
        module = module.rsplit(".", 1)[0]
    return table[module]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                on.discard(w)
                comp.append(w)
            on.discard(v)
            out.append([v, *comp])

    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def test_imports_go_down_the_layer_table_and_never_in_a_circle():
    table, mods = layer_table(), modules()
    assert len(set(table.values())) >= 8
    graph = import_graph(mods)
    upward = [
        f"{src} ({layer_of(src, table)}) imports {dst} ({layer_of(dst, table)})"
        for src, dsts in graph.items()
        for dst in sorted(dsts)
        if layer_of(dst, table) > layer_of(src, table)
    ]
    assert not upward, upward
    assert not cycles(graph), cycles(graph)
    unlisted = [m for m in mods if m != "scaling" and m.count(".") == 1 and m not in table]
    assert not unlisted, f"modules missing from the layer table: {unlisted}"


def test_the_checker_catches_an_upward_import_and_a_circle():
    table = layer_table()
    graph = {"scaling.config": {"scaling.sweep"}, "scaling.sweep": {"scaling.config"}}
    assert layer_of("scaling.sweep", table) > layer_of("scaling.config", table)
    assert cycles(graph) and sorted(cycles(graph)[0]) == ["scaling.config", "scaling.sweep"]


JAX_FREE = textwrap.dedent("""
    import sys
    from scaling.cli import main
    from scaling.config import ConfigError, load_run_config
    assert main(["run", sys.argv[1], "--dry-run", "--out", sys.argv[2]]) == 0
    assert main(["status", sys.argv[2]]) == 2  # nothing ran there: a one-line error, still no jax
    try:
        load_run_config(sys.argv[3])
    except ConfigError as e:
        print("config error:", e)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "orbax"))
    print("loaded:", loaded)
""")


def test_config_validation_and_dry_run_leave_jax_unloaded(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 10, batch_size: -4}\n")
    r = subprocess.run(
        [sys.executable, "-c", JAX_FREE, str(ROOT / "experiments" / "quickstart.yaml"), str(tmp_path / "o"), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "stages" in r.stdout and "config error:" in r.stdout and "train.batch_size" in r.stdout
    assert "loaded: []" in r.stdout, r.stdout
