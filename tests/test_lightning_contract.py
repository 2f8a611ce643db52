"""What hornet relies on in Lightning beyond its documented API, pinned: a Lightning upgrade that changes any of it
fails here, with what to look at, instead of somewhere deep in a fit."""

import inspect

from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

from hornet.ablation.progress import SuiteProgressBar


def test_lightning_reads_a_checkpoint_through_the_strategy_s_checkpoint_io():
    """hornet reads the checkpoint a run starts from once and hands it to Lightning through its CheckpointIO plugin
    (hornet.checkpoints.AtomicCheckpointIO.load_checkpoint): Lightning must still load through it."""
    source = inspect.getsource(_CheckpointConnector.resume_start)
    assert "strategy.load_checkpoint(" in source, "Lightning no longer loads checkpoints through the strategy"
    from lightning.pytorch.strategies import Strategy

    assert "self.checkpoint_io.load_checkpoint(" in inspect.getsource(Strategy.load_checkpoint)


def test_the_suite_progress_bar_uses_rich_progress_bar_internals_that_still_exist():
    """SuiteProgressBar adds its line in RichProgressBar._init_progress and reads its progress state: private API."""
    assert issubclass(SuiteProgressBar, RichProgressBar)
    assert "trainer" in inspect.signature(RichProgressBar._init_progress).parameters
    source = inspect.getsource(RichProgressBar)
    for name in ("self.progress", "self._progress_stopped"):
        assert name in source, f"RichProgressBar no longer has {name}: update hornet/ablation/progress.py"
