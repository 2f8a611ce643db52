"""A DataModule for the distributed tests: synthetic data whose training images are NaN on one rank only."""

import torch
from torch.utils.data import TensorDataset

from hornet.data import SyntheticDataModule


class NaNOnRankOne(SyntheticDataModule):
    """SyntheticDataModule whose rank-1 process trains on NaN images: its loss alone is non-finite."""

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.trainer is not None and self.trainer.global_rank == 1:
            images, labels = self.train_set.tensors
            self.train_set = TensorDataset(torch.full_like(images, float("nan")), labels)
