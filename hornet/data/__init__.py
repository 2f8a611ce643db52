"""LightningDataModules: image classification and semantic segmentation."""

from hornet.data.ade20k import ADE20KDataModule
from hornet.data.base import ClassificationDataModule, ImageDataModule, SegmentationDataModule
from hornet.data.cifar import CIFARDataModule
from hornet.data.fashion_mnist import FashionMNISTDataModule
from hornet.data.image_folder import ImageFolderDataModule
from hornet.data.scenes import FashionMNISTScenes
from hornet.data.synthetic import SyntheticDataModule

__all__ = [
    "ADE20KDataModule",
    "CIFARDataModule",
    "ClassificationDataModule",
    "FashionMNISTDataModule",
    "FashionMNISTScenes",
    "ImageDataModule",
    "ImageFolderDataModule",
    "SegmentationDataModule",
    "SyntheticDataModule",
]
