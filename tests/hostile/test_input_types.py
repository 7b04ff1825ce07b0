"""Properties of the shared input types and the cursor codec (no database)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from orgbill.credits.schemas import CreditConsume
from orgbill.errors import BadRequest
from orgbill.kit.pagination import CursorCodec
from orgbill.kit.schemas import DecimalNumber
from orgbill.kit.types import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_DEPTH,
    FreeJson,
    Int64,
    Text,
    Timestamp,
)


class TextModel(BaseModel):
    value: Text


class TimestampModel(BaseModel):
    value: Timestamp


class IntModel(BaseModel):
    value: Int64


class JsonModel(BaseModel):
    value: FreeJson


class DecimalOut(BaseModel):
    value: DecimalNumber


# Any code point, lone surrogates included (what json.loads can produce from "\udxxx").
any_text = st.text(st.characters(codec=None, categories=None))


@given(any_text)
def test_text_accepts_exactly_nul_free_utf8_encodable_strings(value: str) -> None:
    encodable = True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        encodable = False
    ok = encodable and "\x00" not in value
    if ok:
        assert TextModel(value=value).value == value  # kept exactly as sent
    else:
        with pytest.raises(ValidationError):
            TextModel(value=value)


@given(st.text(), st.integers(0, 50), st.sampled_from(["\x00", "\udfff", "\ud800"]))
def test_text_refuses_a_nul_or_surrogate_anywhere(prefix: str, at: int, bad: str) -> None:
    value = prefix[:at] + bad + prefix[at:]
    with pytest.raises(ValidationError):
        TextModel(value=value)


offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(timezones=offsets))
def test_timestamps_are_accepted_iff_their_utc_year_is_1970_to_9999(value: datetime) -> None:
    try:
        utc_year = value.astimezone(UTC).year
    except OverflowError:
        utc_year = None
    if utc_year is not None and 1970 <= utc_year <= 9999:
        parsed = TimestampModel(value=value.isoformat()).value
        assert parsed == value and parsed.tzinfo == UTC
    else:
        with pytest.raises(ValidationError):
            TimestampModel(value=value.isoformat())


@given(st.datetimes())
def test_naive_timestamps_are_refused(value: datetime) -> None:
    with pytest.raises(ValidationError):
        TimestampModel(value=value.isoformat())


@given(st.integers())
def test_int64_accepts_exactly_the_signed_64_bit_range(value: int) -> None:
    if INT64_MIN <= value <= INT64_MAX:
        assert IntModel(value=value).value == value
    else:
        with pytest.raises(ValidationError):
            IntModel(value=value)
    with pytest.raises(ValidationError):
        IntModel.model_validate_json(json.dumps({"value": str(value)}))  # strict: no coercion


clean_text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20
)
json_leaves = st.none() | st.booleans() | st.integers(INT64_MIN, INT64_MAX) | clean_text
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(clean_text, children, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(st.dictionaries(clean_text, json_values, max_size=4), st.integers(0, 40))
@settings(max_examples=200)
def test_free_json_is_accepted_iff_within_depth(value: dict, wrap: int) -> None:  # type: ignore[type-arg]
    for _ in range(wrap):
        value = {"w": value}
    if _depth(value) <= MAX_JSON_DEPTH:
        assert JsonModel(value=value).value == value
    else:
        with pytest.raises(ValidationError):
            JsonModel(value=value)


codecs = st.binary(min_size=16, max_size=32).map(CursorCodec)
sort_keys = st.tuples(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.uuids(),
)


@given(codecs, sort_keys)
def test_cursor_round_trips(codec: CursorCodec, key: tuple[datetime, uuid.UUID]) -> None:
    assert codec.decode(codec.encode(*key)) == key


@given(codecs, sort_keys, st.data())
def test_any_edit_to_a_cursor_is_detected(
    codec: CursorCodec, key: tuple[datetime, uuid.UUID], data: st.DataObject
) -> None:
    cursor = codec.encode(*key)
    at = data.draw(st.integers(0, len(cursor) - 1))
    replacement = data.draw(st.sampled_from("ABCDEFabcdef0123456789-_.=!"))
    edited = cursor[:at] + replacement + cursor[at + 1 :]
    if edited == cursor:
        return
    try:
        decoded = codec.decode(edited)
    except BadRequest:
        return
    # base64 ignores the unused low bits of the last character: a "different" string that
    # decodes to the same bytes carries the same position, never another one.
    assert decoded == key


@given(codecs, codecs, sort_keys)
def test_a_cursor_from_another_secret_is_refused(
    a: CursorCodec, b: CursorCodec, key: tuple[datetime, uuid.UUID]
) -> None:
    if a.key == b.key:
        return
    with pytest.raises(BadRequest):
        b.decode(a.encode(*key))


@given(st.text(max_size=200))
def test_decoding_junk_is_always_bad_request(junk: str) -> None:
    codec = CursorCodec(b"k" * 32)
    with pytest.raises(BadRequest):
        codec.decode(junk)


@given(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1_000_000_000), places=4))
def test_credit_amounts_keep_four_places_and_serialise_as_the_same_number(
    amount: Decimal,
) -> None:
    consume = CreditConsume(amount=amount, idempotency_key="k")
    assert consume.amount == amount
    rendered = json.loads(DecimalOut(value=amount).model_dump_json())["value"]
    assert Decimal(str(rendered)) == amount


@given(
    st.one_of(
        st.decimals(min_value=Decimal(1_000_000_001), allow_nan=False, allow_infinity=False),
        st.decimals(max_value=Decimal(0), allow_nan=False, allow_infinity=False),
        st.decimals(min_value=Decimal(0), max_value=Decimal(10), places=6).filter(
            lambda d: d != d.quantize(Decimal("0.0001"))
        ),
        st.just(Decimal("NaN")),
        st.just(Decimal("Infinity")),
    )
)
def test_credit_amounts_out_of_range_or_too_precise_are_refused(amount: Decimal) -> None:
    with pytest.raises(ValidationError):
        CreditConsume(amount=amount, idempotency_key="k")
