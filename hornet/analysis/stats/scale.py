"""A suite's scale, read from its runs' configs rather than from a stored sentence: epochs, training images, seeds,
and whether the runs reached the study's longer schedule (``ablation.longer_schedule``, where its answer is read) or
stopped short of it (then the table checks that the study runs, not its answer: at the smoke scale the kernel
ablation starred gf_all, at the longer schedule dw3).

Shared by the suite's own output, `hornet report`, its figures and the notebooks, so all say the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["SuiteScale", "suite_scale"]

# the config keys that cut a run's training data, and how a reader is told (value -> words)
TRAINING_DATA_KEYS = {
    "data.init_args.limit_train": lambda n: f"{n:,} training images",
    "data.init_args.train_size": lambda n: f"{n:,} training images",  # generated data
    "data.init_args.train_scenes": lambda n: f"{n:,} training scenes",
    "trainer.limit_train_batches": lambda n: f"{n:,} batches an epoch" if isinstance(n, int) else f"{n:.0%} of it",
}


@dataclass(frozen=True)
class SuiteScale:
    """What a suite's runs trained on, over its runs (several values where variants differ)."""

    epochs: tuple = ()
    training_data: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    longer_config: str | None = None  # the overlay of the study's longer schedule, when the suite names one
    short_of: dict = field(default_factory=dict)  # key -> (the schedule's value, the runs' values) where they differ

    @property
    def reached_longer_schedule(self) -> bool | None:
        """True or False when the suite names its longer schedule; None when it does not."""
        return None if self.longer_config is None else not self.short_of

    def describe(self) -> str:
        """'2 epochs, 20,000 training images, 3 seeds'."""
        epochs = " or ".join(str(e) for e in self.epochs) or "?"
        plural = "s" if self.epochs != (1,) else ""
        seeds = f"{len(self.seeds)} seed{'s' * (len(self.seeds) != 1)}"
        return f"{epochs} epoch{plural}, {' or '.join(self.training_data) or '?'}, {seeds}"

    def line(self) -> str:
        """The scale, and the caveat when the runs stopped short of the study's longer schedule."""
        if self.reached_longer_schedule is not False:
            schedule = " (the study's longer schedule)" if self.reached_longer_schedule else ""
            return f"scale: {self.describe()}{schedule}"
        differ = ", ".join(  # by key: the stored order of a suite.json's settings is not part of its meaning
            f"{key.rpartition('.')[2]}={_shown(want)}" for key, (want, _) in sorted(self.short_of.items())
        )
        return (
            f"scale: {self.describe()}, not the study's longer schedule ({differ}): a check that the study runs, "
            f"not its answer, which can differ there (add --config {self.longer_config})"
        )


def suite_scale(configs: Sequence[dict], seeds: Iterable[int], longer_schedule: dict | None = None) -> SuiteScale:
    """The scale of runs with these resolved ``configs`` (one per run) and ``seeds``; ``longer_schedule`` is the
    suite's ``{"config": path, "settings": {dotted key: value}}`` (ablation.longer_schedule)."""
    epochs = tuple(sorted({_select(config, "trainer.max_epochs") for config in configs}, key=str))
    training_data = []
    for config in configs:
        limits = [
            say(value)
            for key, say in TRAINING_DATA_KEYS.items()
            if (value := _select(config, key)) is not None and value != 1.0
        ]
        training_data.append(", ".join(limits) or "the full training split")
    short_of = {}
    settings = (longer_schedule or {}).get("settings", {})
    for key, want in settings.items():
        have = sorted({_plain(_select(config, key)) for config in configs}, key=str)
        if have != [_plain(want)]:
            short_of[key] = (want, have)
    return SuiteScale(
        epochs=epochs,
        training_data=tuple(dict.fromkeys(training_data)),
        seeds=tuple(sorted(set(seeds))),
        longer_config=(longer_schedule or {}).get("config"),
        short_of=short_of,
    )


def _shown(value) -> str:
    return "null" if value is None else str(value)


def _select(config, dotted: str):
    """config["a"]["b"] for "a.b" (dicts or namespaces), None where a key is missing."""
    node = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return None
    return node


def _plain(value):
    """A config value in a hashable form (lists as tuples)."""
    return tuple(value) if isinstance(value, list) else value
