"""``--task minilm``: the task and variant names parse to the documented recipes; bad input is
refused with a typed error naming each offending item, before anything runs or is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.compare.minilm_variants import (
    ALL_VARIANTS,
    DEFAULT_VARIANTS,
    QUICK_VARIANTS,
    parse_minilm_variant,
    parse_minilm_variants,
)
from prunekit.compare.settings import parse_task
from prunekit.errors import SpecError
from prunekit.specs import NM, TransformerStructured, Unstructured


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["compare", "--no-progress", *args])
    return result.exit_code, result.output


def test_unstructured_and_nm_names_give_the_method_and_amount() -> None:
    for name, importance in (("magnitude-50", "l1"), ("wanda-50", "wanda"),
                             ("sparsegpt-60", "sparsegpt")):
        variant = parse_minilm_variant(name)
        (spec,) = variant.specs
        assert isinstance(spec, Unstructured) and spec.importance == importance
        assert variant.family == "unstructured"
    assert parse_minilm_variant("sparsegpt-60").specs[0].sparsity == pytest.approx(0.6)
    nm = parse_minilm_variant("SparseGPT-2:4")
    assert nm.name == "sparsegpt-2:4" and nm.family == "nm"
    assert nm.specs == (NM(n_keep=2, m=4, importance="sparsegpt"),)


def test_structured_names_remove_heads_neurons_or_blocks_ranked_by_activation() -> None:
    heads, neurons, both, blocks = (parse_minilm_variant(n).specs[0] for n in
                                    ("heads-25", "neurons-50", "structured-25", "layers-2"))
    assert (heads.heads, heads.neurons) == (0.25, 0.0)
    assert (neurons.heads, neurons.neurons) == (0.0, 0.5)
    assert (both.heads, both.neurons) == (0.25, 0.25)
    assert isinstance(blocks, TransformerStructured) and blocks.layers == 2
    assert {s.importance for s in (heads, neurons, both, blocks)} == {"activation"}
    assert {parse_minilm_variant(n).family for n in ("heads-25", "layers-1")} == {"structured"}


def test_combined_is_structured_then_wanda() -> None:
    variant = parse_minilm_variant("combined-25+50")
    first, second = variant.specs
    assert variant.family == "combined"
    assert isinstance(first, TransformerStructured) and (first.heads, first.neurons) == (0.25,
                                                                                         0.25)
    assert isinstance(second, Unstructured) and second.importance == "wanda"
    assert second.sparsity == pytest.approx(0.5)


def test_default_quick_and_all_sets_parse_and_span_the_families() -> None:
    for names, text in ((DEFAULT_VARIANTS, None), (QUICK_VARIANTS, ""), (ALL_VARIANTS, "all")):
        parsed = parse_minilm_variants(text, quick=names is QUICK_VARIANTS)
        assert [v.name for v in parsed] == list(names)
        assert {"unstructured", "structured", "combined"} <= {v.family for v in parsed}


def test_bad_names_are_all_named_in_one_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_minilm_variants("magnitude-50,bogus-3,heads-100,layers-0,unstructured-90")
    message = info.value.message
    for bad in ("bogus-3", "100%", "layers-0", "unstructured-90"):
        assert bad in message
    assert "magnitude-50'" not in message
    assert info.value.hint and "sparsegpt-2:4" in info.value.hint
    with pytest.raises(SpecError, match="listed twice: wanda-50"):
        parse_minilm_variants("wanda-50,Wanda-50")


def test_task_names() -> None:
    assert parse_task(" MiniLM ") == "minilm" and parse_task("image") == "image"
    with pytest.raises(SpecError) as info:
        parse_task("text")
    assert "'text'" in info.value.message and "minilm" in (info.value.hint or "")


def test_cli_refuses_an_unknown_task(tmp_path: Path) -> None:
    code, out = _run("--task", "bert", "--out", str(tmp_path))
    assert code == 2 and "unknown --task 'bert'" in out and "minilm" in out
    assert not any(tmp_path.iterdir())


def test_cli_refuses_bad_minilm_variants_before_running(tmp_path: Path) -> None:
    code, out = _run("--task", "minilm", "--variants", "wanda-50,nm-2:4", "--out", str(tmp_path))
    assert code == 2 and "unknown minilm variant 'nm-2:4'" in out and "hint:" in out
    assert not any(tmp_path.iterdir())


def test_cli_refuses_image_options_with_the_minilm_task(tmp_path: Path) -> None:
    code, out = _run("--task", "minilm", "--dataset", "x.y:z", "--augment", "--distill",
                     "--out", str(tmp_path))
    assert code == 2
    assert "--dataset" in out and "--augment" in out and "--distill" in out
    assert not any(tmp_path.iterdir())


def test_a_missing_text_source_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prunekit.compare import minilm_data
    from prunekit.errors import DataError

    monkeypatch.setattr(minilm_data, "FORTUNES", tmp_path / "no-fortunes")
    with pytest.raises(DataError) as info:
        minilm_data.minilm_text(calibration=4, train=4, held_out=4)
    assert "no-fortunes" in info.value.message
    assert info.value.hint == "apt-get install -y fortunes"
    monkeypatch.setattr(minilm_data, "WORDNET", tmp_path / "no-wordnet")
    with pytest.raises(DataError, match="no-wordnet"):
        minilm_data.wordnet_examples()
