"""qlib-prefect: Qlib's quant-research workflow as Prefect 3 flows with MLflow 3 tracking.

The qlib entry points keep their names and signatures, so a qlib script ports by changing imports:

    >>> import qlib_prefect
    >>> qlib_prefect.init(provider_uri="~/.qlib/qlib_data/cn_data", region="cn")  # doctest: +SKIP
    >>> from qlib_prefect.workflow import R  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qlib_prefect._version import __version__
from qlib_prefect.config.runtime import C

__all__ = ["C", "__version__", "init"]


def init(
    provider_uri: str | Path | None = None,
    region: str | None = None,
    exp_manager: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """qlib's ``qlib.init``, two explicit steps (whatever modules were imported before):

    1. :func:`qlib_prefect.config.runtime.configure`: ``C`` gets the provider URI, the region defaults
       (``cn``/``us``/``tw``: trade unit, limit threshold, deal price), ``exp_manager`` and any other qlib key;
       the data provider is rebuilt for the new URI on next use (``qlib_prefect.data.registry``);
    2. :func:`qlib_prefect.workflow.rebuild_recorder`: ``R`` is rebuilt from ``C["exp_manager"]`` (an explicit
       tracking URI is checked now; refused while an experiment is active, like qlib).

    Nothing heavy happens: no data is read and MLflow is not imported.
    """
    from qlib_prefect.config.runtime import configure
    from qlib_prefect.workflow import rebuild_recorder

    configure(provider_uri, region, exp_manager, **kwargs)
    rebuild_recorder(C.get("exp_manager"))
