"""LightningModules."""

from hornet.lit.classification import ClassificationModule

__all__ = ["ClassificationModule"]
