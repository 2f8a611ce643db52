"""Ablation suites: a config's `ablation:` section -> one fit + test per variant x seed -> results.csv."""

from hornet.ablation.spec import AblationConfig, AblationRun, AblationVariant, plan_runs, select_runs, variant_config

__all__ = ["AblationConfig", "AblationRun", "AblationVariant", "plan_runs", "select_runs", "variant_config"]
