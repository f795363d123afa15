"""String types shared by the request schemas of every domain.

Postgres ``text`` cannot hold U+0000, so a NUL is refused where it arrives, with
the field's name, instead of failing in the database ("a value is out of range").
"""

from __future__ import annotations

from typing import Annotated

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
