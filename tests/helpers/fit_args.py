"""The `hornet fit` argument lists that several test modules share: tiny runs on synthetic data (seconds on a CPU)."""


def tiny_fit(
    *,
    train_size: int = 64,
    batch_size: int | None = 16,
    epochs: int = 2,
    backbone: str = "hornet_micro_7x7",
    summary: bool = True,
    lr: str | None = None,
) -> list[str]:
    """`hornet fit` arguments: ``backbone`` on SyntheticDataModule (32 px, 32 validation and 32 test images), no
    progress bar, every step logged; ``lr`` (e.g. "1e-1") comes with the linear lr rule."""
    args = [
        "--data.class_path", "hornet.data.SyntheticDataModule", "--data.init_args.img_size", "32",
        "--data.init_args.train_size", str(train_size), "--data.init_args.val_size", "32",
        "--data.init_args.test_size", "32", "--model.backbone", backbone, "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
    ]  # fmt: skip
    if batch_size is not None:
        args += ["--data.init_args.batch_size", str(batch_size)]
    if not summary:
        args += ["--trainer.enable_model_summary", "false"]
    if lr is not None:
        args += ["--model.recipe.lr", lr, "--model.recipe.lr_scaling", "linear"]
    return args
