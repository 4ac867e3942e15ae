"""Safe text, keyed hashes and URL ids: tables of what passes and what is refused, with the field named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, SecretStr, ValidationError

from shared.http import install_common
from shared.security.hashing import AddressHasher
from shared.security.text import SafeJsonObject, SafeLine, SafeText, json_text_problem, text_problem
from shared.security.urls import TemplateError, fill_url_template, quote_id


class Note(BaseModel):
    comment: SafeText
    owner: SafeLine | None = None
    attributes: SafeJsonObject = {}


@pytest.mark.parametrize(
    ("value", "single_line", "problem"),
    [
        ("Waited 40 minutes", False, None),
        ("line one\nline two\ttab\r\n", False, None),
        ("émoji 😀 and 中文", False, None),
        ("a\x00b", False, "NUL character (U+0000)"),
        ("\ud800", False, "unpaired surrogate (U+D800)"),
        ("x\udfffy", False, "unpaired surrogate (U+DFFF)"),
        ("bell\x07", False, "control character U+0007"),
        ("del\x7f", False, "control character U+007F"),
        ("two\nlines", True, "control character U+000A"),
        ("tab\t", True, "control character U+0009"),
        ("plain", True, None),
    ],
)
def test_text_problem(value: str, single_line: bool, problem: str | None) -> None:
    found = text_problem(value, single_line=single_line)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"plan": "pro", "seats": 3, "tags": ["a", "b"]}, None),
        ({"plan": "pro\x00"}, "attributes.plan must not contain a NUL"),
        ({"tags": ["ok", "bad\ud83d"]}, "attributes.tags[1] must not contain an unpaired surrogate"),
        ({"nested": {"deep": [{"x": "\x00"}]}}, "attributes.nested.deep[0].x must not"),
        ({"k\x00": 1}, "a key of attributes must not contain a NUL"),
        ({"k\n": 1}, "a key of attributes must not contain the control character U+000A"),
    ],
)
def test_json_text_problem_names_the_path(value: dict[str, Any], problem: str | None) -> None:
    found = json_text_problem(value, path="attributes")
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"comment": "a\x00b"}, "comment", "comment must not contain a NUL character (U+0000)"),
        (
            {"comment": "ok", "owner": "x\ud800"},
            "owner",
            "owner must not contain an unpaired surrogate (U+D800)",
        ),
        (
            {"comment": "ok", "attributes": {"a": "\x00"}},
            "attributes",
            "attributes.a must not contain a NUL",
        ),
    ],
)
def test_the_pydantic_types_name_the_field(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Note.model_validate(body)
    (error,) = caught.value.errors()
    assert error["loc"] == (field,) and message in error["msg"]


def test_a_fastapi_route_answers_422_naming_the_field_for_json_escapes() -> None:
    app = FastAPI()
    install_common(app, service="t", checks={})

    @app.post("/notes")
    async def notes(note: Note) -> dict[str, str]:
        return {"comment": note.comment}

    client = TestClient(app)
    raw = '{"comment": "fine", "attributes": {"plan": "\\ud800"}}'  # an unpaired surrogate as JSON sends it
    answer = client.post("/notes", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["field"] == "attributes"
    assert body["detail"] == "attributes: attributes.plan must not contain an unpaired surrogate (U+D800)"
    ok = client.post(
        "/notes",
        content=json.dumps({"comment": "Très bien 😀"}),
        headers={"content-type": "application/json"},
    )
    assert ok.json() == {"comment": "Très bien 😀"}


KEY = "k" * 8 + "Qw3rTy9-Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1"
OLD_KEY = "o" * 8 + "Pp0Oo9Ii8Uu7Yy6Tt5Rr4Ee3Ww2Qq1Aa"


def test_address_hashes_are_keyed_normalised_and_separated_by_kind() -> None:
    hasher = AddressHasher([SecretStr(KEY)])
    other = AddressHasher([OLD_KEY])
    email = hasher.email(" Ana@Example.COM ")
    assert email == hasher.email("ana@example.com") and len(email) == 64
    assert email != other.email("ana@example.com")  # keyed: another key, another hash
    assert hasher.phone("+33 6 12-34.56 (78)") == hasher.phone("+3361234567" + "8")
    assert hasher.hash("customer", "+33612345678") != hasher.phone("+33612345678")  # purposes never collide
    assert hasher.customer("cus_1") != hasher.customer("CUS_1")  # ids compare exactly


def test_rotation_matches_old_hashes_while_new_ones_use_the_new_key() -> None:
    before = AddressHasher([OLD_KEY]).email("ana@example.com")
    rotating = AddressHasher([KEY, OLD_KEY])
    assert rotating.email("ana@example.com") != before
    assert rotating.candidates("email", "ana@example.com") == [rotating.email("ana@example.com"), before]


@pytest.mark.parametrize("keys", [[], ["short"], [KEY, "also short"]])
def test_weak_hash_keys_are_refused(keys: list[str]) -> None:
    with pytest.raises(ValueError, match="key"):
        AddressHasher(keys)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("cus_1042", "cus_1042"),
        ("a/b", "a%2Fb"),
        ("../admin", "..%2Fadmin"),
        ("x?y=1&z#f", "x%3Fy%3D1%26z%23f"),
        ("é 1", "%C3%A9%201"),
        ("a+b%2F", "a%2Bb%252F"),
    ],
)
def test_quote_id(value: str, quoted: str) -> None:
    assert quote_id(value) == quoted


def test_url_templates_encode_every_value_and_refuse_other_placeholders() -> None:
    template = "https://survey.example.com/s/{survey_id}?c={customer_id}"
    filled = fill_url_template(template, {"survey_id": "q1", "customer_id": "a/b&admin=1"})
    assert filled == "https://survey.example.com/s/q1?c=a%2Fb%26admin%3D1"
    for bad in (
        "https://x/{customer_id.__class__}",
        "https://x/{customer_id!r}",
        "https://x/{0}",
        "https://x/{other}",
    ):
        with pytest.raises(TemplateError):
            fill_url_template(bad, {"customer_id": "c"})
