"""The package's shape: imports flow one way (no cycle anywhere, no layer importing a layer above it), the model
package runs without Lightning, and nothing in the repository points outside it."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hornet"
# Top to bottom: a module may import from its own layer (without a cycle) or from layers below it.
LAYERS = [
    ["hornet.cli"],
    ["hornet.training"],
    ["hornet.ablation"],
    ["hornet.lit", "hornet.callbacks", "hornet.loggers", "hornet.strategies"],
    ["hornet.analysis"],
    ["hornet", "hornet.runs", "hornet.data", "hornet.models"],
    ["hornet.ops"],
    ["hornet.errors", "hornet.files"],
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the hornet modules it imports anywhere in its body (function-level imports included)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package upwards
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                imported.add(base)
                imported |= {f"{base}.{alias.name}" for alias in node.names}  # from package import module
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _layer(module: str) -> int:
    matches = [(len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer
               if module == prefix or module.startswith(prefix + ".")]  # fmt: skip
    assert matches, f"{module} is in no layer of tests/test_structure.py"
    return max(matches)[1]  # the longest matching prefix


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                cycle = [*path[path.index(dependency) :], dependency]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 30 and "hornet.training" in graph["hornet.cli"]  # the walk saw the package


def test_imports_flow_down_the_layers():
    upward = [
        f"{module} -> {dependency}"
        for module, dependencies in import_graph().items()
        for dependency in dependencies
        if _layer(dependency) < _layer(module)
    ]
    assert not upward, upward


def test_the_model_package_imports_and_runs_without_lightning():
    code = (
        "import sys; sys.modules['lightning'] = sys.modules['pytorch_lightning'] = None\n"
        "import timm, torch, hornet, hornet.models, hornet.ops, hornet.analysis.complexity\n"
        "out = timm.create_model('hornet_micro_gf', num_classes=3)(torch.randn(1, 3, 32, 32))\n"
        "assert out.shape == (1, 3) and 'lightning' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_nothing_in_the_repository_points_outside_it():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = ROOT / name
        if path.suffix in (".pt", ".png") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for needle in ("../shared", "DESIGN.md", "REFERENCE.md"):
            if needle in text and name != "tests/test_structure.py":
                offenders.append(f"{name}: {needle}")
    assert not offenders, offenders


def test_an_installed_package_finds_the_default_config(tmp_path):
    """A non-editable install (a wheel) carries lightning_cli.yaml, and `hornet fit` finds it from any directory."""
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w"]
    assert subprocess.run([*build, str(tmp_path / "wheel")], capture_output=True).returncode == 0
    (wheel,) = (tmp_path / "wheel").glob("hornet-*.whl")
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "-q",
        "--target",
        str(tmp_path / "site"),
        str(wheel),
    ]
    assert subprocess.run(install, capture_output=True).returncode == 0
    code = "import hornet.training as t; print(t.DEFAULT_CONFIG); print(t.DEFAULT_CONFIG.read_text())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    location, _, text = done.stdout.partition("\n")
    assert (
        location.startswith(str(tmp_path / "site"))
        and text.strip() == (ROOT / "lightning_cli.yaml").read_text().strip()
    )
