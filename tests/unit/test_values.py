"""The rules of values: numbers bounded as integers are, text without control
characters, keys that stay distinct, ASCII race numbers."""

from __future__ import annotations

import math

import pytest

from domain.errors import InvalidValue
from domain.values import SAFE_INTEGER, clean_details, clean_name, clean_race_number


@pytest.mark.parametrize(
    "number",
    [SAFE_INTEGER + 1, -SAFE_INTEGER - 1, float(SAFE_INTEGER + 1), 1e20, -1.797e308, math.nan, math.inf],
)
def test_a_number_beyond_the_safe_range_is_refused_naming_its_key(number: float) -> None:
    with pytest.raises(InvalidValue) as info:
        clean_details({"weight": number})
    assert info.value.field == "details.weight"


@pytest.mark.parametrize("number", [SAFE_INTEGER, -SAFE_INTEGER, 9007199254740991.0, 0.1, 5e-324, 1e15, 0])
def test_a_number_within_the_safe_range_is_kept_as_it_is(number: float) -> None:
    cleaned = clean_details({"weight": number})
    assert cleaned["weight"] == number and type(cleaned["weight"]) is type(number)


def test_negative_zero_becomes_the_zero_jsonb_gives_back() -> None:
    assert math.copysign(1, clean_details({"z": -0.0})["z"]) == 1


def test_keys_equal_after_trimming_are_refused() -> None:
    with pytest.raises(InvalidValue) as info:
        clean_details({"a": 1, " a ": 2})
    assert info.value.field == "details.a"


@pytest.mark.parametrize("text", ["A\u2028B", "A\u2029B", "A\x1b[31mB", "\u202eevil", "A\u200bB"])
def test_line_separators_and_format_characters_are_refused_in_names(text: str) -> None:
    with pytest.raises(InvalidValue):
        clean_name(text)


@pytest.mark.parametrize("number", ["\u0661\u0662", "\u216b", "\u00e91"])
def test_a_race_number_is_ascii_letters_and_digits(number: str) -> None:
    with pytest.raises(InvalidValue) as info:
        clean_race_number(number)
    assert info.value.field == "race_number"
