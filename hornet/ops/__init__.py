"""Pure torch operators: gnConv and its spatial mixers (no Lightning, no registry)."""

from hornet.ops.gnconv import GnConv, gnconv_dims
from hornet.ops.mixers import GlobalLocalFilter, create_mixer, filter_size_for, global_filter, parse_mixer

__all__ = [
    "GlobalLocalFilter",
    "GnConv",
    "create_mixer",
    "filter_size_for",
    "global_filter",
    "gnconv_dims",
    "parse_mixer",
]
