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
    ["hornet.commands"],
    ["hornet.launch", "hornet.config"],
    ["hornet.ablation"],
    ["hornet.lit", "hornet.callbacks", "hornet.checkpoints", "hornet.loggers", "hornet.strategies"],
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
    assert len(graph) > 30 and "hornet.commands.run" in graph["hornet.cli"]  # the walk saw the package


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
        "import timm, torch, hornet, hornet.models, hornet.ops, hornet.analysis.measure.complexity\n"
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
    code = "import hornet.config as c; print(c.DEFAULT_CONFIG); print(c.DEFAULT_CONFIG.read_text())"
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


def _registered_functions() -> set[str]:
    """Names of the module-level functions under ``@register_model`` in hornet/models/."""
    names = set()
    for path in (PACKAGE / "models").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                getattr(d, "id", getattr(d, "attr", None)) == "register_model" for d in node.decorator_list
            ):
                names.add(node.name)
    return names


def test_every_hornet_timm_model_has_its_own_register_model_function():
    import timm

    ours = {name for name in timm.list_models() if timm.models.model_entrypoint(name).__module__.startswith("hornet.")}
    assert len(ours) >= 30 and ours == _registered_functions()


def test_files_do_one_job_and_no_control_flow_goes_through_argv_or_exceptions():
    """No file in hornet/ over about 350 lines; nothing assigns sys.argv or leaves a suite by an exception."""
    too_long = {
        str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 360
    }
    assert not too_long, too_long
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "SuiteFinished" not in text, path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for leaf in ast.walk(target):
                        assert not (isinstance(leaf, ast.Attribute) and leaf.attr == "argv"), f"{path}: sys.argv"


def test_importing_hornet_leaves_torch_s_unpickling_allow_list_alone():
    """Released checkpoints' argparse.Namespace is allowed while reading them (safe_globals), never globally."""
    code = (
        "import argparse, torch\n"
        "import hornet, hornet.launch, hornet.models.convert\n"
        "assert argparse.Namespace not in torch.serialization.get_safe_globals()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
