"""Small JSON results (stage metrics) written deterministically and read back."""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any


def _clean(x: Any, digits: int) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v, digits) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v, digits) for v in x]
    if isinstance(x, Fraction):
        return f"{x.numerator}/{x.denominator}"
    if isinstance(x, Path):
        return x.as_posix()
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        x = x.item()
    if isinstance(x, float):
        if not math.isfinite(x):
            return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return float(f"{x:.{digits}g}")
    return x


def write_json(path: str | os.PathLike, data: dict, digits: int = 6) -> Path:
    """Write ``data`` as sorted, indented JSON; floats rounded to ``digits`` significant digits
    (so runs that differ only in the last bits of a float give the same file). Atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(_clean(data, digits), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
