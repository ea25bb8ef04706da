"""The compare terminal table fits an 80-column (narrow or piped) terminal, nothing cut."""

from __future__ import annotations

from report_samples import DENSE_BYTES, document, layers, row
from rich.console import Console

from prunekit.report import render_terminal


def _rendered(width: int) -> str:
    variants = [
        row("unstructured-95", "unstructured", accuracy=0.9177, nonzero=36_940,
            disk=int(0.0725 * DENSE_BYTES), b1=0.99, b64=0.97),
        row("structured-75", "structured", accuracy=0.9038, nonzero=44_226, macs=5_100_000,
            disk=int(0.0742 * DENSE_BYTES), b1=3.48, b64=8.37),
        row("combined-12.5+87.5", "combined", accuracy=0.9180, nonzero=35_898,
            macs=20_200_000, disk=196_763, b1=12.33, b64=13.5,
            layer_rows=layers([(16, 32)], [0.8])),
        {"name": "nm-2:4", "family": "nm", "status": "failed",
         "error": "a long error message that has to wrap onto the next line of the terminal"},
    ]
    console = Console(width=width, record=True, color_system=None)
    render_terminal(document(variants), console)
    return console.export_text()


def test_every_cell_fits_80_columns_without_truncation() -> None:
    text = _rendered(80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for cell in ("combined-12.5+87.5", "dense+recovery", "91.77", "92.89", "-0.58", "-1.12",
                 "+0.54", "18.8x", "0.072x", "0.070x", "3.48x", "12.33x", "13.50x", "failed"):
        assert cell in text, cell


def test_each_row_stays_on_one_line() -> None:
    lines = _rendered(80).splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("─"))
    body = lines[rule + 1:lines.index(" " * len(lines[rule]), rule)]
    names = ["dense", "dense+recovery", "unstructured-95", "structured-75",
             "combined-12.5+87.5", "nm-2:4"]
    assert [line.split()[0] for line in body] == names  # no row folded onto a second line
    for line in body[2:5]:
        assert len(line.split()) == 8, line  # every column of a pruned variant filled
