"""Caption rules and tag names: every rule on a hand-made image's tags."""

import pytest

from furrytag_cli.captions.names import TagNames, tag_key
from furrytag_cli.captions.style import CaptionStyle
from furrytag_cli.core.errors import UsageError

TAGS = {
    "species": [("wolf", 0.9), ("canine", 0.8), ("mammal", 0.5)],
    "body": [("long_tail", 0.85), ("pokemon_(species)", 0.6)],
}
MODEL = ["wolf", "canine", "mammal", "long_tail", "pokemon_(species)", "fox"]
IMPLIES = {"wolf": ["canine", "mammal"], "canine": ["mammal"], "fox": ["canine", "mammal"]}


def caption(**rules):
    style = CaptionStyle(**rules).check(MODEL, IMPLIES)
    return style.format(TAGS, "questionable")


def test_names_match_any_case_and_spaces():
    assert tag_key("  Long Tail ") == "long_tail" == tag_key("long_tail")
    assert tag_key(r"Pokemon \(Species\)") == "pokemon_(species)"
    names = TagNames(MODEL)
    assert names.resolve(["LONG TAIL", "Wolf"], "--first") == ["long_tail", "wolf"]
    with pytest.raises(UsageError, match="--first names unknown tag 'wolff' .did you mean 'wolf'"):
        names.resolve(["wolff"], "--first")


def test_each_rule():
    assert caption() == "wolf, long_tail, canine, pokemon_(species), mammal"
    assert caption(order="head") == "wolf, canine, mammal, long_tail, pokemon_(species)"
    assert caption(implied="drop") == "wolf, long_tail, pokemon_(species)"
    assert caption(implied="add", order="head") == (
        "wolf, canine, mammal, long_tail, pokemon_(species)"
    )
    assert caption(first=["Pokemon (species)", "fox"]).startswith("pokemon_(species), wolf, ")
    assert caption(replace={"Long Tail": "tail", "canine": ""}) == (
        "wolf, tail, pokemon_(species), mammal"
    )
    assert caption(rating_tag="rating:{}", prefix=["me"]).startswith("me, rating:questionable, ")
    assert caption(rating_tag="{}", rating_at="end", suffix=["z"]).endswith("questionable, z")
    assert caption(separator=" ", underscores=False, escape_parens=True) == (
        "wolf long tail canine pokemon \\(species\\) mammal"
    )


def test_two_tags_implying_each_other_are_both_kept():
    style = CaptionStyle(implied="drop").check(MODEL, {"wolf": ["canine"], "canine": ["wolf"]})
    assert style.format(TAGS, "safe") == "wolf, long_tail, canine, pokemon_(species), mammal"


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"order": "random"}, "--order must be one of score, head"),
        ({"rating_at": "middle"}, "--rating-at must be one of start, end"),
        ({"extension": ".png"}, "--caption-ext must be one of .txt, .caption"),
        ({"implied": "keep"}, "--implied must be one of drop, add"),
        ({"rating_tag": "rating"}, "{} stands for the rating"),
        ({"separator": ""}, "--separator must not be empty"),
    ],
)
def test_bad_rules_are_usage_errors(rules, message):
    with pytest.raises(UsageError, match=message):
        CaptionStyle(**rules)


def test_rules_naming_unknown_tags_or_missing_implications_are_refused():
    with pytest.raises(UsageError, match="--replace names unknown tag 'wolves'"):
        CaptionStyle(replace={"wolves": "x"}).check(MODEL, None)
    with pytest.raises(UsageError, match="--implied drop needs an implication table"):
        CaptionStyle(implied="drop").check(MODEL, None)
    assert CaptionStyle(extension="caption").extension == ".caption"
