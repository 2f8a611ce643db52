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
    SIGUSR1) to this process, or to its parent (a suite's process, for a worker), once per ``marker`` file.
    ``fate`` is what becomes of the exception the signal raises here: "raised"; "lost" (dropped, as CPython drops one
    landing inside pickle's C code); "replaced" (by a RuntimeError, as a half-written ``torch.save`` replaces it)."""

    def __init__(
        self, step: int, marker: str, name: str = "SIGTERM", parent: bool = False, fate: str = "raised"
    ) -> None:
        self.step = step
        self.marker = Path(marker)
        self.signum = signal.Signals[name]
        self.parent = parent
        self.fate = fate

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            try:
                os.kill(os.getppid() if self.parent else os.getpid(), self.signum)
            except BaseException:
                if self.fate == "replaced":
                    raise RuntimeError("unexpected pos 3320640 vs 3320528")  # noqa: B904 (as torch.save raised it in CI)
                if self.fate == "raised":
                    raise


def signal_at_step(
    step: int, marker: Path, name: str = "SIGTERM", *, parent: bool = False, fate: str = "raised"
) -> dict:
    """The callback as a ``trainer.callbacks`` config entry; tests/helpers must be importable (it is under pytest;
    tests that start subprocesses put it on their PYTHONPATH)."""
    init = {"step": step, "marker": str(marker), "name": name, "parent": parent, "fate": fate}
    return {"class_path": "signal_at_step.SignalAtStep", "init_args": init}
