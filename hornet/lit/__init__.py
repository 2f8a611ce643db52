"""LightningModules."""

from hornet.lit.classification import ClassificationModule
from hornet.lit.task import Task

__all__ = ["ClassificationModule", "Task"]
