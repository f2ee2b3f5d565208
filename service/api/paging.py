"""The parameters every /v1 list takes to page (service/pages.py): `limit`, and `cursor` from `next_cursor`.

A cursor this API did not give out is a 400 naming `cursor`: service/problems.py answers the
CursorError the list's query raises, so no route handles it.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

Limit = Annotated[int, Parameter(ge=1, le=500, description="Page size (1–500).")]
Cursor = Annotated[
    str | None,
    Parameter(description="The previous page's `next_cursor`, for the page after it; absent: the first page."),
]
