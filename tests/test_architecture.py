"""How the house is built (docs/ARCHITECTURE.md), checked: layers only look down, no import cycles
(function-local imports included), `lumen3d --help` does not import torch, and `train`, `export`
and `view` dispatch through the one registry."""
import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

PACKAGES = ("engine", "kernels", "scenes", "viewer")
# bottom to top; a module may import its own layer and those below
LAYERS = [
    ("data", ("engine._version", "engine.errors", "engine.io", "engine.progress", "engine.threads", "engine.runs",
              "engine.data", "engine.cameras")),
    ("kernels", ("kernels",)),
    ("scenes", ("scenes",)),
    ("rendering", ("engine.rendering",)),
    ("guidance", ("engine.guidance",)),
    ("training", ("engine.losses", "engine.strategies", "engine.sfm", "engine.body_", "engine.train_bench",
                  "engine.sds_bench", "engine.mesh_bench",
                  "engine.training",
                  "engine.methods", "engine.registry")),
    ("viewer", ("viewer",)),
    ("jobs", ("engine.jobs", "engine.cli", "engine")),
]


def _modules() -> dict[str, object]:
    mods = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module → the project modules it imports anywhere in its source (top level or in functions)."""
    mods = _modules()

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t)
                if r and r != m and r not in PACKAGES:
                    graph[m].add(r)
    return graph


def layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + ".") or (p.endswith("_") and module.startswith(p)):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md"
    return best[0]


def test_every_import_looks_down_the_layers():
    graph = import_graph()
    up = [f"{m} ({LAYERS[layer(m)][0]}) imports {d} ({LAYERS[layer(d)][0]})"
          for m, deps in graph.items() for d in deps if layer(d) > layer(m)]
    assert not up, "\n".join(up)


def test_no_import_cycles():
    graph = import_graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
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
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_sees_function_local_imports_and_cycles():
    graph = import_graph()
    # jobs/train.py imports the viewer's live preview inside a function only
    assert "viewer.live" in graph["engine.jobs.train"]
    assert layer("engine.jobs.train") > layer("engine.training.loop") > layer("engine.rendering.gaussians") \
        > layer("scenes.gaussians") > layer("kernels.splat") > layer("engine.data.dataset")


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["train", "gaussians", "--help"],
                                  ["export", "--help"]])
def test_help_does_not_import_torch(args):
    code = ("import sys\nfrom engine.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'open3d', 'pycolmap') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "HEAVY []" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_train_export_and_view_dispatch_through_the_registry(capsys):
    from engine.cli import main
    from engine.registry import KINDS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    listed = capsys.readouterr().out
    for kind in KINDS.values():
        assert kind.name in listed and all(a in listed for a in kind.aliases)
        assert kind.method_class().kind == kind.name == kind.config.kind and kind.exports
    src = (REPO / "viewer" / "content.py").read_text() + (REPO / "engine" / "jobs" / "train.py").read_text()
    assert "grid_density" not in src and '"train-gaussians"' not in src  # no sniffing of keys or job names
