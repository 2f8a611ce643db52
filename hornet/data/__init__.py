"""LightningDataModules for image classification."""

from hornet.data.base import ClassificationDataModule
from hornet.data.fashion_mnist import FashionMNISTDataModule
from hornet.data.synthetic import SyntheticDataModule

__all__ = ["ClassificationDataModule", "FashionMNISTDataModule", "SyntheticDataModule"]
