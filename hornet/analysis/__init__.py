"""Complexity counting, paper reference numbers and reports (no Lightning needed)."""

from hornet.analysis.complexity import CONVENTIONS, Complexity, count_complexity, profile_model

__all__ = ["CONVENTIONS", "Complexity", "count_complexity", "profile_model"]
