"""A Lightning callback for tests: the process sends a signal when training reaches a given step.

Signals sent this way land at a known training step, however fast the machine is (a test that sleeps and then
signals does not). A marker file records each signal, so a resumed run (same config, same callback) does not send it
again.
"""

import os
import signal
from pathlib import Path

from lightning.pytorch import Callback


class SignalAtStep(Callback):
    """After the optimizer step that makes ``trainer.global_step == step``, send the signal ``name`` (SIGTERM, SIGINT,
    SIGUSR1) to this process, or to its parent (a suite's process, for a worker), once per ``marker`` file."""

    def __init__(self, step: int, marker: str, name: str = "SIGTERM", parent: bool = False) -> None:
        self.step = step
        self.marker = Path(marker)
        self.signum = signal.Signals[name]
        self.parent = parent

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getppid() if self.parent else os.getpid(), self.signum)


def signal_at_step(step: int, marker: Path, name: str = "SIGTERM", *, parent: bool = False) -> dict:
    """The callback as a ``trainer.callbacks`` config entry; tests/helpers must be importable (it is under pytest;
    tests that start subprocesses put it on their PYTHONPATH)."""
    init = {"step": step, "marker": str(marker), "name": name, "parent": parent}
    return {"class_path": "signal_at_step.SignalAtStep", "init_args": init}
