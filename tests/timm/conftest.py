"""Make the shared structured-pruning oracles and the timm case table importable here."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "structured"))
sys.path.insert(0, str(HERE))
