"""Training checkpoints: the one read of the checkpoint a run starts from, its checks, and the atomic writer.

A run that starts from a checkpoint (a resumed fit, a test of the best epoch) reads it once, here: the read checks
that it is a Lightning training checkpoint whose weights fit the model, gives the resume position to the data, and is
handed to Lightning through ``AtomicCheckpointIO``, which returns it instead of reading the file again.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from hornet.errors import UsageError
from hornet.files import write_atomic

__all__ = ["AtomicCheckpointIO", "forget_unsaved_best", "read_training_checkpoint"]


def read_training_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> dict:
    """The checkpoint at ``path`` (memory-mapped), or one clear line: no such file, not a PyTorch checkpoint, model
    weights rather than a training checkpoint of `hornet fit`, or weights of another model than ``model``."""
    if not Path(path).is_file():
        raise UsageError(f"--ckpt_path {str(path)!r}: no such checkpoint file")
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        raise ValueError(f"--ckpt_path {str(path)!r} is not a PyTorch checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        keys = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"--ckpt_path {str(path)!r} holds model weights ({keys}), not a training checkpoint of `hornet fit`; start "
            "from weights with model.backbone_kwargs: {pretrained: true, pretrained_cfg_overlay: {file: PATH}}"
        )
    if model is not None:
        from hornet.models.convert import describe_state_dict_mismatch

        problems = describe_state_dict_mismatch(checkpoint["state_dict"], model.state_dict())
        if problems:
            raise ValueError(f"--ckpt_path {str(path)!r} was saved from another model: {problems}")
    return checkpoint


def forget_unsaved_best(checkpoint: dict) -> None:
    """A ModelCheckpoint's state that names a best checkpoint file which is not there (a signal arrived while it was
    written: the state is updated before the file) is reset, so the resumed fit saves its next best instead of
    keeping a best it does not have."""
    for state in (checkpoint.get("callbacks") or {}).values():
        best = state.get("best_model_path") if isinstance(state, dict) else None
        if best and not Path(best).is_file():
            state.update(best_model_path="", best_model_score=None, best_k_models={}, kth_best_model_path="")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, then renamed (Lightning's default stages them in
    the system temp dir and moves them, which is a plain copy when that is another file system); and the checkpoint
    the run already read (``preloaded``: path -> checkpoint) given to Lightning without a second read."""

    def __init__(self, preloaded: dict[str, dict] | None = None) -> None:
        super().__init__()
        self.preloaded = {str(Path(path).resolve()): checkpoint for path, checkpoint in (preloaded or {}).items()}

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda handle: torch.save(checkpoint, handle), binary=True)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        preloaded = self.preloaded.pop(str(Path(path).resolve()), None) if "://" not in str(path) else None
        if preloaded is not None:
            return preloaded
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
