"""timm's own model tests (tests/test_models.py from timm's source release, unmodified) on every hornet model.

The file comes from the source distribution of the installed timm version on PyPI (downloaded once into the virtual
environment) and runs in a pytest of its own, with tests/upstream/timm_models_plugin.py selecting hornet's models.
Each model must pass timm's checks: forward, backward, default cfgs and the model API contract, TorchScript,
features_only, FX forward / backward and FX + TorchScript. The full-size released variants carry the ``slow`` mark.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest
import timm

import hornet  # noqa: F401  (registers the models)

UPSTREAM = Path(__file__).resolve().parent / "upstream"
TIMM_VERSION = metadata.version("timm")
CACHE = Path(sys.prefix) / "timm-tests" / TIMM_VERSION
# timm's generic model tests; each hornet model must pass every one of them
CHECKS = {
    "test_model_forward", "test_model_backward", "test_model_default_cfgs", "test_model_forward_torchscript",
    "test_model_forward_features", "test_model_forward_fx", "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
}  # fmt: skip


# timm files vit_* models under its "non-standard" models: their cfg test is test_model_default_cfgs_non_std and
# they have no test_model_forward_features (timm's own ViTs are treated the same way)
NON_STANDARD = ("vit_",)


def required_checks(model: str) -> set[str]:
    if model.startswith(NON_STANDARD):
        return (CHECKS - {"test_model_default_cfgs", "test_model_forward_features"}) | {
            "test_model_default_cfgs_non_std"
        }
    return CHECKS


def timm_test_file() -> Path:
    """tests/test_models.py of the installed timm version, from its source release on PyPI (cached in the venv)."""
    target = CACHE / "test_models.py"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as download:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", f"timm=={TIMM_VERSION}", "--no-binary", ":all:", "--no-deps",
             "--quiet", "-d", download],
            capture_output=True, text=True,
        )  # fmt: skip
        if fetched.returncode != 0:
            pytest.skip(f"timm {TIMM_VERSION}'s source release could not be downloaded: {fetched.stderr[-300:]}")
        (archive,) = Path(download).glob("timm-*.tar.gz")
        with tarfile.open(archive) as tar:
            member = tar.extractfile(f"timm-{TIMM_VERSION}/tests/test_models.py")
            CACHE.mkdir(parents=True, exist_ok=True)
            (CACHE / "pytest.ini").write_text("[pytest]\n")  # its own rootdir: none of our pytest settings
            target.write_bytes(member.read())
    return target


def run_timm_tests(patterns: str, tmp_path: Path) -> dict[str, Counter]:
    """Run timm's file on the hornet models matching ``patterns``; per model, the outcome of each check."""
    report = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(UPSTREAM), os.environ.get("PYTHONPATH", "")])}
    env["HORNET_TIMM_MODELS"] = patterns
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(timm_test_file()), "-p", "timm_models_plugin", "-q", "-p",
         "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning", f"--junitxml={report}"],
        cwd=CACHE, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    outcomes: dict[str, Counter] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        check, _, params = case.get("name").partition("[")
        model = params.rstrip("]").split("-", 1)[1]
        outcome = "skipped" if case.find("skipped") is not None else "failed" if len(case) else "passed"
        outcomes.setdefault(model, Counter())[(check, outcome)] += 1
    return outcomes


def _models(patterns: str) -> list[str]:
    import fnmatch

    ours = [n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith("hornet.")]
    return [n for n in ours if any(fnmatch.fnmatch(n, p) for p in patterns.split(","))]


@pytest.mark.parametrize(
    "patterns",
    [
        "hornet_micro_*,hornet_nano_*,convnext_*,swin_*,*_iso_micro*",  # the CPU-sized models and the hosts
        pytest.param("hornet_tiny_*,hornet_small_*,hornet_base_*,hornet_large_*,*_iso_small*", marks=pytest.mark.slow),
    ],
    ids=["small", "released"],
)
def test_timm_model_tests_pass_on_every_hornet_model(patterns, tmp_path):
    models = _models(patterns)
    outcomes = run_timm_tests(patterns, tmp_path)
    assert sorted(outcomes) == sorted(models)  # every model of ours was tested, and only ours
    for model, results in outcomes.items():
        passed = {check for (check, outcome) in results if outcome == "passed"}
        assert passed >= required_checks(model), (model, sorted(required_checks(model) - passed), results)


def test_reference_transcriptions_stay_out_of_timms_registry():
    from hornet.models import REFERENCE_MODELS, create_model

    assert not set(REFERENCE_MODELS) & set(timm.list_models("hornet*"))
    assert type(create_model("hornet_micro_7x7_reference")).__name__ == "ReferenceHorNet"
