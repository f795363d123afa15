"""String types shared by the request schemas of every domain, and the bound on
free-form JSON (filters, conditions): at most :data:`MAX_JSON_DEPTH` levels deep
and :data:`MAX_JSON_LIST` items in any list, so no body makes a validator or the
policy engine walk an arbitrarily deep or long structure.

Postgres ``text`` cannot hold U+0000, so a NUL is refused where it arrives, with
the field's name, instead of failing in the database ("a value is out of range").
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import AfterValidator, StringConstraints


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (U+0000)")
    return value


NoNul = AfterValidator(_no_nul)

#: A display name: 1-255 characters, surrounding white space dropped.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), NoNul]
#: An optional label, such as a token's name: at most 255 characters.
Label = Annotated[str, StringConstraints(max_length=255), NoNul]
#: Free text (descriptions, addresses before the engine checks them): at most 1024.
Text = Annotated[str, StringConstraints(max_length=1024), NoNul]


#: Levels a free-form JSON object may nest (an object in a list in an object: 3).
MAX_JSON_DEPTH: Final = 4
#: Items any list inside a free-form JSON object may hold.
MAX_JSON_LIST: Final = 1000


def _bounded(value: Any, depth: int = 1) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for item in value.values():
            _bounded(item, depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_JSON_LIST:
            raise ValueError(f"holds a list of more than {MAX_JSON_LIST} items")
        for item in value:
            _bounded(item, depth + 1)


def _bounded_object(value: dict[str, Any]) -> dict[str, Any]:
    _bounded(value)
    return value


#: A free-form JSON object (a filter, a condition) of bounded depth and list lengths.
BoundedObject = Annotated[dict[str, Any], AfterValidator(_bounded_object)]
