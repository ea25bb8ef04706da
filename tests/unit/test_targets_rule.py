r"""How ``ignore=`` and ``overrides=`` entries select modules, the same in every pruning path.

A string is a module name and covers that module's children (``"1.0"`` never selects
``"100"``); a regex is used only when given compiled (``re.compile(r"blocks\.\d+")``,
matched in full); a type selects its instances; a bare entry is a one-element list; an
entry that selects nothing is a TargetError.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.targets import check_ignore, ignore_entries, matches


class Digits(nn.Module):
    """Modules named ``1.0`` and ``100``: the old regex reading of ``"1.0"`` took both."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("1", nn.Sequential(nn.Linear(8, 8)))
        self.add_module("100", nn.Linear(8, 8))
        self.add_module("2", nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.get_submodule("100")(self.get_submodule("1")(x))
        return self.get_submodule("2")(torch.relu(hidden))


def digits() -> nn.Module:
    torch.manual_seed(0)
    return Digits()


X = torch.randn(4, 8)
MASKED_PATHS = {
    "unstructured": lambda m, ignore: pk.prune(m, pk.Unstructured(sparsity=0.5), ignore=ignore),
    "nm": lambda m, ignore: pk.prune(m, pk.NM(2, 4), ignore=ignore),
    "wanda": lambda m, ignore: pk.prune(
        m, pk.Unstructured(sparsity=0.5, importance="wanda"), calibration=[X], ignore=ignore
    ),
}


def structured(model: nn.Module, ignore: object) -> pk.PruneResult:
    return pk.prune(model, pk.Structured(sparsity=0.5), X, ignore=ignore)


@pytest.mark.parametrize(
    ("entry", "name", "expected"),
    [
        ("1.0", "1.0", True),
        ("1.0", "100", False),  # "." is not a wildcard
        ("1", "1.0", True),  # a name covers its children
        ("features", "features.3", True),
        ("features", "features3", False),
        ("fc", "fc1", False),
        (r"blocks\.\d+\.fc1", "blocks.11.fc1", False),  # a string is never a regex
        (re.compile(r"blocks\.\d+\.fc1"), "blocks.11.fc1", True),
        (re.compile(r"blocks\.\d+"), "blocks.11.fc1", False),  # matched in full
        (re.compile(r"1.0"), "100", True),  # asked for explicitly
        (nn.Linear, "anything", True),
        (nn.Conv2d, "anything", False),
    ],
)
def test_matches(entry, name: str, expected: bool) -> None:
    assert matches(entry, name, nn.Linear(2, 2)) is expected


IGNORE_FORMS = {"list": ["1.0"], "bare-string": "1.0", "bare-regex": re.compile(r"1\.0")}


@pytest.mark.parametrize("path", MASKED_PATHS, ids=list(MASKED_PATHS))
@pytest.mark.parametrize("form", IGNORE_FORMS, ids=list(IGNORE_FORMS))
def test_masked_paths_ignore_exactly_the_named_module(path: str, form: str) -> None:
    result = MASKED_PATHS[path](digits(), IGNORE_FORMS[form])
    assert set(result.plan.skipped) == {"1.0"}
    assert set(result.plan.masks) == {"100.weight", "2.weight"}


@pytest.mark.parametrize(
    "form",
    ["list", "bare-string", "bare-regex"],
)
def test_structured_ignores_exactly_the_named_module(form: str) -> None:
    result = structured(digits(), IGNORE_FORMS[form])
    assert set(result.plan.skipped) == {"1.0"}
    assert result.model.get_submodule("1.0").out_features == 8  # pinned by ignore
    assert result.model.get_submodule("100").out_features == 4  # pruned, not taken for "1.0"


def test_a_skip_reason_names_the_entry() -> None:
    prune = MASKED_PATHS["unstructured"]
    assert prune(digits(), "1.0").plan.skipped == {"1.0": "ignored by '1.0'"}
    by_regex = prune(digits(), [re.compile(r"1\.0")]).plan.skipped
    assert by_regex == {"1.0": "ignored by re.compile('1\\\\.0')"}


@pytest.mark.parametrize("path", [*MASKED_PATHS, "structured"])
def test_a_compiled_regex_selects_by_full_match(path: str) -> None:
    prune = structured if path == "structured" else MASKED_PATHS[path]
    result = prune(digits(), [re.compile(r"1\d*(\.0)?")])  # "1", "1.0" and "100"
    assert set(result.plan.skipped) == {"1.0", "100"}


@pytest.mark.parametrize("path", [*MASKED_PATHS, "structured"])
def test_a_regex_written_as_a_string_is_a_name_and_fails_with_a_hint(path: str) -> None:
    prune = structured if path == "structured" else MASKED_PATHS[path]
    with pytest.raises(pk.TargetError, match=re.escape(r"re.compile('1\\d+')")):
        prune(digits(), [r"1\d+"])


def test_an_unmatched_name_suggests_close_names() -> None:
    with pytest.raises(pk.TargetError, match=r"'10'.*did you mean 100"):
        check_ignore(digits(), "10")


@pytest.mark.parametrize("bad", [3, None, b"fc", [3]])
def test_unusable_ignore_entries_are_refused(bad: object) -> None:
    with pytest.raises(pk.TargetError, match="compiled regex"):
        ignore_entries(bad)  # type: ignore[arg-type]


def test_bare_entries_are_one_element_lists() -> None:
    pattern = re.compile("x")
    assert ignore_entries("fc") == ["fc"]
    assert ignore_entries(pattern) == [pattern]
    assert ignore_entries(nn.Linear) == [nn.Linear]
    assert ignore_entries(("a", nn.Linear)) == ["a", nn.Linear]


def test_overrides_follow_the_same_rule() -> None:
    spec = pk.Unstructured(sparsity=0.5)
    result = pk.prune(digits(), spec, overrides={"1.0": 0.25})
    removed = {k: int((~m).sum()) for k, m in result.plan.masks.items()}
    assert removed == {"1.0.weight": 16, "100.weight": 32, "2.weight": 16}
    result = pk.prune(digits(), spec, overrides={re.compile(r"1.*"): 0.25})
    removed = {k: int((~m).sum()) for k, m in result.plan.masks.items()}
    assert removed == {"1.0.weight": 16, "100.weight": 16, "2.weight": 16}
    with pytest.raises(pk.TargetError, match=re.escape("re.compile('1.0+')")):
        pk.prune(digits(), spec, overrides={"1.0+": 0.25})


def test_an_unusable_override_key_is_a_target_error() -> None:
    with pytest.raises(pk.TargetError, match="override key 3"):
        pk.prune(digits(), pk.Unstructured(sparsity=0.5), overrides={3: 0.25})
