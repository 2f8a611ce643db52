"""hornet: gnConv and the HorNet family as timm models, with a Lightning research template around them.

``import hornet`` registers every HorNet variant in timm.
"""

import os

# torch.profiler's kineto prints start/stop lines on stderr from C++, at a level read once when torch loads
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

from hornet import models, ops  # noqa: F401  (registers the timm models)
from hornet.models import HorNet
from hornet.ops import GlobalLocalFilter, GnConv

__version__ = "0.1.0"
__all__ = ["GlobalLocalFilter", "GnConv", "HorNet", "__version__"]
