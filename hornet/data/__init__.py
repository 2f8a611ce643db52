"""LightningDataModules: image classification, semantic segmentation, detection and instance segmentation."""

from hornet.data.ade20k import ADE20KDataModule
from hornet.data.base import ClassificationDataModule, DetectionDataModule, ImageDataModule, SegmentationDataModule
from hornet.data.cifar import CIFARDataModule
from hornet.data.coco import COCODataModule
from hornet.data.fashion_mnist import FashionMNISTDataModule
from hornet.data.image_folder import ImageFolderDataModule
from hornet.data.scenes import FashionMNISTDetectionScenes, FashionMNISTScenes
from hornet.data.synthetic import SyntheticDataModule

__all__ = [
    "ADE20KDataModule",
    "CIFARDataModule",
    "COCODataModule",
    "ClassificationDataModule",
    "DetectionDataModule",
    "FashionMNISTDataModule",
    "FashionMNISTDetectionScenes",
    "FashionMNISTScenes",
    "ImageDataModule",
    "ImageFolderDataModule",
    "SegmentationDataModule",
    "SyntheticDataModule",
]
