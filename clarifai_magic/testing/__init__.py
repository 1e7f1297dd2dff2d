"""The offline server under the name tests, benchmarks and older docs import it by.

Everything here is :mod:`clarifai_magic.offline`, which is the feature users see (``%clarifai
offline``, the demo); see its docstring for the script builders.
"""

from ..offline import *  # noqa: F403
from ..offline import __all__  # noqa: F401
