"""Drawing the plots leaves matplotlib's global state (backend, pyplot) as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from report_samples import document, layers, row

SCRIPT = """
import json, sys
from pathlib import Path
import matplotlib
before = matplotlib.get_backend()
import prunekit.report
from prunekit.report.plots import write_plots
paths = write_plots(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
print(json.dumps({"before": before, "after": matplotlib.get_backend(),
                  "pyplot": "matplotlib.pyplot" in sys.modules,
                  "pngs": [p.read_bytes()[:4].hex() for p in paths]}))
"""


def test_plots_keep_the_callers_backend_and_do_not_load_pyplot(tmp_path: Path) -> None:
    data = document([row("structured-50", "structured", accuracy=0.92, nonzero=174_970,
                         macs=20_200_000, b1=2.0, b64=3.3,
                         layer_rows=layers([(16, 32), (32, 64)], [0.0, 0.0]))])
    (tmp_path / "results.json").write_text(json.dumps(data))
    env = {**os.environ, "MPLBACKEND": "svg"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "results.json"),
                             str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["before"] == "svg" and seen["after"] == "svg"
    assert not seen["pyplot"]
    assert seen["pngs"] == ["89504e47"] * 3  # each of the three files is a PNG
