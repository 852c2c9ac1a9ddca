"""qlib's composite data loaders (``qlib.data.dataset.loader``): ``NestedDataLoader`` joins several loaders,
``DataLoaderDH`` serves data fetched from data handlers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd

from qlib_prefect.data.loader import DataLoader
from qlib_prefect.utils import init_instance_by_config

__all__ = ["DataLoaderDH", "NestedDataLoader"]

logger = logging.getLogger(__name__)


class NestedDataLoader(DataLoader):
    """Load with every loader of ``dataloader_l`` (objects or configs) and join the frames on the index
    (``join``: ``pd.merge`` ``how``); a later loader's columns replace equal earlier ones; columns sorted."""

    def __init__(self, dataloader_l: list[Any], join: str = "left") -> None:
        self.data_loader_l = [
            dl if isinstance(dl, DataLoader) else init_instance_by_config(dl, _where="NestedDataLoader.dataloader_l")
            for dl in dataloader_l
        ]
        self.join = join

    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:
        df_full: pd.DataFrame | None = None
        for dl in self.data_loader_l:
            try:
                df_current = dl.load(instruments, start_time, end_time)
            except KeyError:
                warnings.warn(
                    "If the value of `instruments` cannot be processed, it will set instruments to None to get all "
                    "the data.",
                    stacklevel=2,
                )
                df_current = dl.load(instruments=None, start_time=start_time, end_time=end_time)
            if df_full is None:
                df_full = df_current
            else:
                full_cols = set(df_full.columns.tolist())
                df_full = df_full.drop(columns=[c for c in df_current.columns.tolist() if c in full_cols])
                df_full = pd.merge(df_full, df_current, left_index=True, right_index=True, how=self.join)
        assert df_full is not None, "NestedDataLoader needs at least one loader"
        return df_full.sort_index(axis=1)


class DataLoaderDH(DataLoader):
    """Data fetched from a handler (``is_group=False``) or ``{group: handler}`` (handler objects or configs);
    ``fetch_kwargs`` go to ``handler.fetch`` (default ``col_set="__raw"``). ``instruments`` is ignored."""

    def __init__(self, handler_config: Any, fetch_kwargs: Mapping[str, Any] | None = None, is_group: bool = False):
        from qlib_prefect.data.handler import DataHandler

        def build(cfg: Any) -> Any:
            return init_instance_by_config(cfg, accept_types=DataHandler, _where="DataLoaderDH.handler_config")

        self.handlers = {g: build(c) for g, c in handler_config.items()} if is_group else build(handler_config)
        self.is_group = is_group
        self.fetch_kwargs = {"col_set": DataHandler.CS_RAW, **dict(fetch_kwargs or {})}

    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:
        if instruments is not None:
            logger.warning("instruments[%s] is ignored", instruments)
        sel = slice(start_time, end_time)
        if self.is_group:
            return pd.concat(
                {g: dh.fetch(selector=sel, level="datetime", **self.fetch_kwargs) for g, dh in self.handlers.items()},
                axis=1,
            )
        return self.handlers.fetch(selector=sel, level="datetime", **self.fetch_kwargs)
