"""A classifier and its data for the analyses (resolution sweep, interactions, ERF), without Lightning: from a
`hornet fit` run or checkpoint (the backbone rebuilt with timm and loaded from its ``backbone.*``), or any timm
classifier by name with an optional weights file (the authors' released format, timm's, or a `hornet fit`
checkpoint, as timm's loader and hornet's checkpoint filter read them), on the run's data, the default data, or an
ImageNet-layout folder through the model's own evaluation transform (its pretrained cfg's size, crop and mean)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from hornet.models import check_model_name, input_size_kwargs
from hornet.runs import RunDir, class_args

__all__ = ["Trained", "datamodule_from_config", "load_trained"]

DEFAULT_DATA = {"class_path": "hornet.data.FashionMNISTDataModule", "init_args": {}}  # the default config's data


@dataclass
class Trained:
    """A classifier in eval mode, the DataModule it was trained on (not set up), and where both came from."""

    model: nn.Module
    data: object
    source: str
    backbone: str


def datamodule_from_config(data: dict, **overrides):
    """The DataModule a config's ``data`` section names (``class_path`` + ``init_args``), with ``overrides``."""
    module_name, _, class_name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**{**(data.get("init_args") or {}), **overrides})


def _backbone(name: str, kwargs: dict, *, num_classes: int, in_chans: int, img_size: int, checkpoint: Path | None):
    check_model_name(name, key="--model")
    kwargs = {**kwargs, **input_size_kwargs(name, img_size)}  # GF filters are resized from the checkpoint's on load
    if checkpoint is not None:
        kwargs |= dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint)))
    with torch.random.fork_rng():
        torch.manual_seed(0)  # an untrained model's initialisation is the same every time
        return timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs).eval()


def load_trained(
    *, run: str | Path | None = None, ckpt: str | Path | None = None, model: str | None = None,
    weights: str | Path | None = None, model_kwargs: dict | None = None, data_root: str | Path | None = None,
    img_size: int | None = None,
) -> Trained:  # fmt: skip
    """Exactly one of ``run`` (a `hornet fit` run directory: its config and best checkpoint), ``ckpt`` (a `hornet
    fit` checkpoint: its saved hyperparameters name the backbone; the data is the default config's) or ``model`` (a
    timm name built with ``model_kwargs``, loaded from ``weights`` when given, else untrained). ``data_root`` (an
    ImageNet-layout folder: train/ and val/ of class folders) replaces the data, seen through the model's own
    evaluation transform; ``img_size`` overrides the data's image size."""
    if sum(x is not None for x in (run, ckpt, model)) != 1:
        raise ValueError("give exactly one of --run, --ckpt and --model")
    if (weights is not None or model_kwargs) and model is None:
        raise ValueError("--weights and --model-kwargs go with --model (a run or checkpoint names its own)")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"--weights {weights} does not exist")
    sized = {"img_size": img_size} if img_size else {}
    if run is not None:
        run_dir = RunDir(run)
        config = run_dir.config()
        checkpoint = run_dir.best_checkpoint()
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir.checkpoints} holds no best checkpoint: has the run validated once?")
        hparams, data_section, source = class_args(config["model"]), config["data"], f"run {run_dir.path}"
        if "class_path" in config["model"] and not config["model"]["class_path"].endswith("ClassificationModule"):
            raise ValueError(f"{run_dir.path} is not a classification run ({config['model']['class_path']})")
    elif ckpt is not None:
        checkpoint = Path(ckpt)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--ckpt {checkpoint} does not exist")
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        hparams = saved.get("hyper_parameters") or {}
        if "backbone" not in hparams:
            raise ValueError(f"--ckpt {checkpoint} is not a `hornet fit` classification checkpoint (no backbone)")
        data_section, source = DEFAULT_DATA, f"checkpoint {checkpoint}"
    else:
        checkpoint, hparams, data_section = weights, {"backbone": model, "backbone_kwargs": model_kwargs}, DEFAULT_DATA
        source = f"model {model} ({f'weights {weights}' if weights else 'untrained'})"
    if data_root is not None:
        data_section = {"class_path": "hornet.data.ImageFolderDataModule", "init_args": {
            "root": str(data_root), "num_workers": 0, "auto_augment": None, "re_prob": 0.0,
            "img_size": img_size or _default_size(hparams["backbone"]),
        }}  # fmt: skip
    data = datamodule_from_config(data_section, **sized)
    network = _backbone(
        hparams["backbone"], hparams.get("backbone_kwargs") or {}, num_classes=data.num_classes,
        in_chans=data.in_chans, img_size=data.img_size, checkpoint=checkpoint,
    )  # fmt: skip
    data.transform_model = network  # a folder is read as this model expects (no Trainer to say so)
    return Trained(model=network, data=data, source=source, backbone=hparams["backbone"])


def _default_size(name: str) -> int:
    """The input size a timm model's pretrained cfg states (224 when it states none)."""
    check_model_name(name, key="--model")
    size = timm.models.get_pretrained_cfg_value(name, "input_size")
    return int(size[-1]) if size else 224
