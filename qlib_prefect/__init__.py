"""qlib-prefect: Qlib's quant-research workflow as Prefect 3 flows with MLflow 3 tracking.

The qlib entry points keep their names and signatures, so a qlib script ports by changing imports:

    >>> import qlib_prefect
    >>> qlib_prefect.init(provider_uri="~/.qlib/qlib_data/cn_data", region="cn")  # doctest: +SKIP
    >>> from qlib_prefect.workflow import R  # doctest: +SKIP
"""

from __future__ import annotations

from qlib_prefect._version import __version__
from qlib_prefect.config.runtime import C, init

__all__ = ["C", "__version__", "init"]
