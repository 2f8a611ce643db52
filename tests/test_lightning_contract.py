"""What hornet relies on in Lightning beyond its documented API, pinned: a Lightning upgrade that changes any of it
fails here, with what to look at, instead of somewhere deep in a fit."""

import inspect

from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningCLI

from hornet.ablation.progress import SuiteProgressBar
from hornet.cli import LIGHTNING_SUBCOMMANDS
from hornet.training import HornetCLI


def test_lightning_cli_checks_the_checkpoint_only_after_parse_arguments():
    """HornetCLI.parse_arguments checks --ckpt_path before LightningCLI loads the model's hyperparameters from it
    (a private step, _parse_ckpt_path, that runs right after parsing): the order must stay."""
    source = inspect.getsource(LightningCLI.__init__)
    assert "self.parse_arguments(self.parser, args)" in source and "self._parse_ckpt_path()" in source, (
        "LightningCLI.__init__ changed: check HornetCLI.parse_arguments still runs before the checkpoint is read"
    )
    assert source.index("self.parse_arguments(") < source.index("self._parse_ckpt_path()")
    assert source.index("self._parse_ckpt_path()") < source.index("self.before_instantiate_classes()")


def test_the_hooks_hornet_cli_overrides_keep_their_signatures():
    for hook in ("parse_arguments", "add_arguments_to_parser", "before_instantiate_classes", "instantiate_trainer"):
        ours = inspect.signature(getattr(HornetCLI, hook)).parameters
        theirs = inspect.signature(getattr(LightningCLI, hook)).parameters
        assert list(ours) == list(theirs), f"LightningCLI.{hook}{inspect.signature(getattr(LightningCLI, hook))}"
    assert tuple(LightningCLI.subcommands()) == LIGHTNING_SUBCOMMANDS  # `hornet` dispatches these names to Lightning


def test_the_suite_progress_bar_uses_rich_progress_bar_internals_that_still_exist():
    """SuiteProgressBar adds its line in RichProgressBar._init_progress and reads its progress state: private API."""
    assert issubclass(SuiteProgressBar, RichProgressBar)
    assert "trainer" in inspect.signature(RichProgressBar._init_progress).parameters
    source = inspect.getsource(RichProgressBar)
    for name in ("self.progress", "self._progress_stopped"):
        assert name in source, f"RichProgressBar no longer has {name}: update hornet/ablation/progress.py"
