"""params.yaml access for the stage entry points."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)
