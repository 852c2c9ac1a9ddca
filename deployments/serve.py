"""Serve the qlib-prefect deployments from one process (the same as ``qlib-prefect serve``).

    export PREFECT_API_URL=http://127.0.0.1:4200/api    # a running `prefect server start`
    python deployments/serve.py [--config CFG] [--rolling-config CFG] [--step N] [--rtype expanding|sliding]
"""

from __future__ import annotations

import sys

from qlib_prefect.cli.main import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
