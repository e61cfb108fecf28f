"""Tag semantics of the Qt dialect (reference section 1.14), including the reference's own tests."""

from __future__ import annotations

import pytest

from builder.qt.tags import SoftwareTag, TagError, TagList, app_matches


def test_tag_creation_like_the_reference() -> None:
    assert not SoftwareTag.parse("qt").has_version
    assert SoftwareTag.parse("qt:5.01").has_version
    assert SoftwareTag.parse("qt:5.01_asdf_the_version").has_version
    assert SoftwareTag.parse("Qt") == SoftwareTag("qt")
    for bad in ("фыва", "фыва:5.1", "qt.1:5.1", "qt:1:1", "", "qt:", ":5", "qt:5-1", "a b"):
        with pytest.raises(TagError, match="Malformed tag"):
            SoftwareTag.parse(bad)
    with pytest.raises(TagError, match="Invalid input data-type"):
        SoftwareTag.parse(1)


def test_tag_match_like_the_reference() -> None:
    t13, t12, t121, t122 = (SoftwareTag.parse(f"qt:{v}") for v in ("1.3", "1.2", "1.2.1", "1.2.2"))
    qt, neptune = SoftwareTag.parse("qt"), SoftwareTag.parse("neptune")
    assert not t12.match(t13) and not t13.match(t12)
    assert t121.match(t12) and t122.match(t12) and t121.match(t121)
    assert not t12.match(t121)
    assert not qt.match(neptune)
    assert t13.match(qt) and not qt.match(t13)


@pytest.mark.parametrize(
    ("app_tag", "client_tag", "shown"),
    [
        ("qt:5.15", "qt:5.15.2", True),
        ("qt:5.15", "qt:5.15", True),
        ("qt:5.15", "qt:5", False),
        ("qt:5.15", "qt", False),
        ("qt", "qt:6.5.0", True),
        ("qt:5", "qt:5.15.2", True),
        ("qt:5.1", "qt:5.15", False),
    ],
)
def test_match_table(app_tag: str, client_tag: str, shown: bool) -> None:
    assert app_matches(TagList.parse(client_tag), [app_tag]) is shown


def test_filtering_needs_every_app_tag_matched() -> None:
    app = ["qt:5.15", "build_target:desktop"]
    assert app_matches(TagList.parse("build_target:desktop,qt:5.15.2"), app)
    assert not app_matches(TagList.parse("qt:5.15"), app)
    assert not app_matches(TagList.parse("qt,build_target"), app)
    assert app_matches(TagList(), [])  # untagged apps always match
    assert not app_matches(TagList(), ["qt"])


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("qt:5.12,qt:5.12.0", "qt:5.12"),
        ("qt:5.12.0,qt:5.12", "qt:5.12,qt:5.12.0"),
        ("qt,qt:5.2,neptune:5.1,neptune", "neptune,qt"),
        ("QT:5.15,Build_Target:desktop", "build_target:desktop,qt:5.15"),
        ("qt:5.1,qt:5.2", "qt:5.1,qt:5.2"),  # the reference's Python 3 build says malformed-tag here
        ("qt:5.1,qt:5.2,qt:5.2,qt:5.2.1,neptune:5.1,neptune:5.2", "neptune:5.1,neptune:5.2,qt:5.1,qt:5.2"),
    ],
)
def test_list_normalisation(given: str, normalised: str) -> None:
    assert str(TagList.parse(given)) == normalised


def test_list_basics_from_the_reference() -> None:
    assert TagList().is_empty()
    lst = TagList()
    lst.append(SoftwareTag.parse("qt"))
    assert not lst.is_empty()
    for bad in (",,", "фыва", "qt:5.1:5.2,qt", ",qt", "qt,"):
        with pytest.raises(TagError):
            TagList.parse(bad)
    assert TagList.parse_optional("").is_empty()


def test_match_positive_and_negative_from_the_reference() -> None:
    empty, tested = TagList(), TagList.parse("qt")
    assert tested.match_positive(empty) and tested.match_negative(empty)
    tested = TagList.parse("qt:5.1,neptune,test:1,second_test")
    assert tested.match_positive(TagList.parse("qt"))
    assert tested.match_positive(TagList.parse("qt:5.1"))
    assert tested.match_positive(TagList.parse("qt:5.1,qt:5.2,neptune:1"))
    assert not tested.match_positive(TagList.parse("qt:5.1,test:2"))
    assert not tested.match_positive(TagList.parse("qt:5.1.1"))
    tested = TagList.parse("qt:5.1,neptune")
    for conflicting in ("qt", "qt:5.1", "qt:5.1,qt:5.2,neptune:1", "qt:5.1,qt:5.2"):
        assert not tested.match_negative(TagList.parse(conflicting))
    assert tested.match_negative(TagList.parse("test"))


def test_hash_is_order_independent_and_content_dependent() -> None:
    assert TagList.parse("qt:5,qt:4,neptune:1").hash() == TagList.parse("neptune:1,qt:4,qt:5").hash()
    assert TagList.parse("qt:5,neptune:2").hash() != TagList.parse("neptune:1,qt:5").hash()
