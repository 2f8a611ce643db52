"""LightningDataModules for image classification."""

from hornet.data.base import ClassificationDataModule, ImageDataModule
from hornet.data.cifar import CIFARDataModule
from hornet.data.fashion_mnist import FashionMNISTDataModule
from hornet.data.image_folder import ImageFolderDataModule
from hornet.data.synthetic import SyntheticDataModule

__all__ = [
    "CIFARDataModule",
    "ClassificationDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "SyntheticDataModule",
]
