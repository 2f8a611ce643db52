import os
from pathlib import Path

import pytest
import torch

import hornet  # noqa: F401  (registers the timm models)

TESTS = Path(__file__).resolve().parent
FIXTURE = TESTS / "fixtures" / "released_hornet_small.pt"  # see fixtures/README.md
# tests/helpers holds test-only callbacks and datamodules that configs name by class path: importable here (pyproject's
# pythonpath) and in the `hornet` subprocesses that tests start
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS / "helpers"), os.environ.get("PYTHONPATH")]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def released_fixture():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture
def one_thread():
    """Run in-process fits with one intra-op thread, like the OMP_NUM_THREADS=1 subprocesses of the same test: float
    sums in another thread split differ in the last bits, which AdamW can amplify. Bit-exact comparisons need it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
