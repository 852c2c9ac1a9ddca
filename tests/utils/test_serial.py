"""``state_digest``: equal pickled states digest alike whatever the object sharing; any value change shows."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from qlib_prefect.utils.serial import Serializable, state_digest


class _Box(Serializable):
    def __init__(self, a: object, b: object, stats: np.ndarray) -> None:
        self.a, self.b, self.stats = a, b, stats
        self._frame = pd.DataFrame({"x": [1.0]})  # private: not pickled, not digested


def test_shared_and_copied_sub_objects_digest_alike() -> None:
    t = pd.Timestamp("2020-07-16")
    shared = _Box((t, t), t, np.arange(3.0))
    copied = _Box((pd.Timestamp("2020-07-16"), pd.Timestamp("2020-07-16")), pd.Timestamp("2020-07-16"),
                  np.arange(3.0))
    shared._frame = pd.DataFrame({"x": [2.0]})
    assert pickle.dumps(shared) != pickle.dumps(copied)  # the pickle memo sees the sharing
    assert state_digest(shared) == state_digest(copied)


def test_any_value_change_changes_the_digest() -> None:
    base = _Box({"k": [1, 2]}, "2020-07-16", np.arange(3.0))
    assert state_digest(base) == state_digest(_Box({"k": [1, 2]}, "2020-07-16", np.arange(3.0)))
    for other in (_Box({"k": [1, 3]}, "2020-07-16", np.arange(3.0)),
                  _Box({"k": (1, 2)}, "2020-07-16", np.arange(3.0)),
                  _Box({"k": [1, 2]}, "2020-07-17", np.arange(3.0)),
                  _Box({"k": [1, 2]}, "2020-07-16", np.arange(3.0) + 1e-12)):
        assert state_digest(other) != state_digest(base)
