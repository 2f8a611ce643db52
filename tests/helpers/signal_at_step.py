"""A Lightning callback for tests: the process sends itself a signal when training reaches a given step.

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
    SIGUSR1) to this process, once per ``marker`` file."""

    def __init__(self, step: int, marker: str, name: str = "SIGTERM") -> None:
        self.step = step
        self.marker = Path(marker)
        self.signum = signal.Signals[name]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), self.signum)


def signal_at_step(step: int, marker: Path, name: str = "SIGTERM") -> dict:
    """The callback as a ``trainer.callbacks`` config entry; tests/helpers must be importable (it is under pytest;
    tests that start subprocesses put it on their PYTHONPATH)."""
    return {
        "class_path": "signal_at_step.SignalAtStep",
        "init_args": {"step": step, "marker": str(marker), "name": name},
    }
