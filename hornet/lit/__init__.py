"""LightningModules: one per task, on a shared Task base."""

from hornet.lit.classification import ClassificationModule
from hornet.lit.detection import DetectionModule
from hornet.lit.segmentation import SegmentationModule
from hornet.lit.task import Task

__all__ = ["ClassificationModule", "DetectionModule", "SegmentationModule", "Task"]
