"""A pytest plugin that runs timm's own tests/test_models.py on hornet's models (used by tests/test_timm_upstream.py).

Loaded with ``-p timm_models_plugin``: it imports hornet, which registers its models in timm, and keeps only the test
items parametrized with one of them; ``HORNET_TIMM_MODELS`` (comma-separated fnmatch patterns) narrows that further.
"""

import fnmatch
import os

import timm

import hornet  # noqa: F401  (registers the models in timm)

PATTERNS = [p for p in os.environ.get("HORNET_TIMM_MODELS", "*").split(",") if p]
MODELS = {
    name
    for name in timm.list_models()
    if timm.models.model_entrypoint(name).__module__.startswith("hornet.")
    and any(fnmatch.fnmatch(name, pattern) for pattern in PATTERNS)
}


def pytest_collection_modifyitems(config, items):
    keep = [
        item for item in items if getattr(item, "callspec", None) and item.callspec.params.get("model_name") in MODELS
    ]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep
