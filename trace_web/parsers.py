"""Request body parsers: DRF's JSON parser, refusing up front what Postgres `jsonb` cannot store,
so such a body is a 400 naming the problem, not a 500 from the database later."""

from __future__ import annotations

import math
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        if problem := unstorable(data):
            raise ParseError(f"JSON parse error - {problem}")
        return data


def unstorable(data: Any) -> str | None:
    """Why `data` cannot be stored as jsonb, or None. Iterative: depth is the parser's limit."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            return "numbers must be finite"
        elif isinstance(value, str):
            if "\x00" in value:
                return "text may not contain NUL (\\u0000)"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "text may not contain unpaired surrogates"
    return None
