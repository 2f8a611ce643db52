"""A callback that fails a fit as it starts, with a given message (a run of a suite that fails mid-way)."""

from lightning.pytorch import Callback


class RaiseAtStart(Callback):
    def __init__(self, message: str) -> None:
        self.message = message

    def on_train_start(self, trainer, pl_module) -> None:
        raise RuntimeError(self.message)
