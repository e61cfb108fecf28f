"""Version ordering: the forms the four dialects use, and what a device sees as "latest"."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.build import build
from builder.versions import newest, version_key
from tests.support.device_index import platform_packages
from tests.support.repos import add_module

# Each list is in strictly increasing order.
ASCENDING = [
    pytest.param(["0.3.2", "0.3.10", "0.4", "1.0", "1.1.0.1", "10.0"], id="dotted-numeric"),
    pytest.param(["1", "2", "9", "10", "11", "100"], id="version-codes-as-text"),
    pytest.param(["v2", "v9", "v10", "v14", "15"], id="leading-v"),
    pytest.param(["2.4.0-pi64", "2.4.1-pi64", "2.4.10-pi64", "2.5-pi64"], id="platform-tag"),
    pytest.param(["1.1.5", "1.1.6-opi64", "1.1.7"], id="tag-sorts-as-its-release"),
    pytest.param(["2.4.1", "2.4.1-opi64", "2.4.1-pi64"], id="tie-broken-by-tag"),
    pytest.param(
        ["1.0-dev", "1.0-alpha", "1.0-alpha2", "1.0-beta", "1.0-rc1", "1.0"], id="pre-release-kinds"
    ),
    pytest.param(["1.0-rc1", "1.0-rc2", "1.0-rc9", "1.0-rc10", "1.0"], id="rc-numbers-compare-as-numbers"),
    pytest.param(["2.0-beta2", "2.0-beta10", "2.0-b11", "2.0"], id="beta-numbers"),
    pytest.param(["0.9", "1.0-rc1", "1.0", "1.0.1-rc1", "1.0.1"], id="pre-release-between-releases"),
    pytest.param(["1.0", "1.0+build7", "1.0+build12"], id="build-metadata"),
    pytest.param(["99.9.9", "main", "master"], id="branch-builds-above-releases"),
    pytest.param(["2.4.1-pi64", "master-pi64"], id="device-api-example"),
    pytest.param(["3.2", "nightly-20240101"], id="branch-with-a-dated-tag"),
]


@pytest.mark.parametrize("ordered", ASCENDING)
def test_versions_sort_in_the_documented_order(ordered: list[str]) -> None:
    for low, high in itertools.pairwise(ordered):
        assert version_key(low) < version_key(high), f"{low} should sort below {high}"
    shuffled = ordered[:]
    random.Random(1).shuffle(shuffled)
    assert sorted(shuffled, key=version_key) == ordered
    assert newest(shuffled) == ordered[-1]


@pytest.mark.parametrize(
    ("a", "b"),
    [("v14", "14"), ("V3.1", "3.1"), ("1.1", "1.1.0"), ("2", "2.0.0"), (" 0.3.2 ", "0.3.2"), ("1.", "1")],
)
def test_equivalent_spellings_have_equal_keys(a: str, b: str) -> None:
    assert version_key(a) == version_key(b)


def test_integer_version_codes_order_numerically_and_match_their_text() -> None:
    codes = [1, 2, 9, 10, 99, 100, 20240101]
    assert sorted(reversed(codes), key=version_key) == codes
    assert version_key(14) == version_key("14") == version_key("v14")
    assert newest([str(c) for c in codes]) == "20240101"


def test_newest_of_nothing_is_none() -> None:
    assert newest([]) is None


def test_tags_compare_without_regard_to_case() -> None:
    assert version_key("1.0-RC1") == version_key("1.0-rc1")
    assert version_key("MASTER") == version_key("master")


VERSIONISH = st.from_regex(r"\A[vV]?[0-9]{1,3}(\.[0-9]{1,3}){0,3}([-+][a-z]{0,6}[0-9]{0,3})?\Z")
ANY_TEXT = st.one_of(VERSIONISH, st.text(alphabet="abcmrtv0123456789.-+", max_size=12), st.integers(0, 10**9))


@given(st.lists(ANY_TEXT, max_size=12))
def test_ordering_is_total_and_independent_of_input_order(versions: list[str | int]) -> None:
    ascending = sorted(versions, key=version_key)  # never raises, whatever the text
    descending_input = sorted(reversed(versions), key=version_key)
    assert [version_key(v) for v in descending_input] == [version_key(v) for v in ascending]
    for a, b in itertools.pairwise(ascending):
        assert version_key(a) <= version_key(b)


@given(VERSIONISH)
def test_a_pre_release_never_outranks_its_own_release(release: str) -> None:
    base = release.split("-")[0].split("+")[0]
    assert version_key(base + "-rc1") < version_key(base)
    assert version_key(base + "-pi64") >= version_key(base)


def test_the_device_index_lists_versions_newest_first(tmp_path: Path) -> None:
    """What a device sees: `latest_version` and the order of `versions` follow the rules above."""
    repo, site = tmp_path / "repo", tmp_path / "site"
    for version in ["2.4.0-pi64", "2.4.10-pi64", "2.4.9-pi64", "2.5.0-rc1", "master-pi64"]:
        add_module(repo, "ax", version, "pi64")
    for version in ["9", "10", "v11"]:
        add_module(repo, "sdk", version, "pi64", manifest=False)
    build(repo, site)
    index = platform_packages(site, "pi64")
    modules = {m["name"]: m for m in index["modules"]}
    assert [v["version"] for v in modules["ax"]["versions"]] == [
        "master-pi64",
        "2.5.0-rc1",
        "2.4.10-pi64",
        "2.4.9-pi64",
        "2.4.0-pi64",
    ]
    assert modules["ax"]["latest_version"] == "master-pi64"
    assert [v["version"] for v in modules["sdk"]["versions"]] == ["v11", "10", "9"]
    assert modules["sdk"]["latest_version"] == "v11"
