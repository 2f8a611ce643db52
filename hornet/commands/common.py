"""What several subcommands share."""

from __future__ import annotations

from collections.abc import Sequence

from hornet.errors import UsageError

__all__ = ["check_model_names"]


def check_model_names(names: Sequence[str]) -> None:
    """Raise UsageError for a name timm does not know, suggesting close matches."""
    from hornet.models import check_model_name

    for name in names:
        try:
            check_model_name(name, key="model")
        except ValueError as err:
            raise UsageError(str(err).removeprefix("model: ")) from None
