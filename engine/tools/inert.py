"""Values from messages made inert before they reach an operator's terminal.

``zhida case | tail | deadletters | lag`` print what other systems wrote. A description that
starts with ``\\x1b]2;pwned\\x07\\x1b[2J`` would retitle and clear the terminal, a bidi override
(U+202E) would show a line in another order than it is, a newline inside a key would fake a
line of output. Every control character is therefore shown as an escape instead:

- C0 (U+0000–U+001F, newline and tab included: one value stays on one line), DEL and C1
  (U+007F–U+009F): ``\\x1b``;
- format characters (Unicode category Cf: bidi embeddings, overrides and isolates
  U+202A–U+202E and U+2066–U+2069, zero-width characters, BOM, …), the line and paragraph
  separators U+2028/U+2029 and lone surrogates: ``\\u202e``, ``\\U000e0001``.

``visible`` is for plain text; ``visible_json`` for JSON text, where JSON already escapes C0
but neither C1 nor bidi characters: it writes the same characters as JSON escapes
(``\\u009b``), so the line is still valid JSON for ``jq`` and decodes to the same value.
"""

from __future__ import annotations

import re

# Cc, Cf, Zl, Zp and Cs of Unicode 14 (Python 3.11's unicodedata) as ranges, C0 apart; U+2065,
# not assigned, is kept inside U+2060–U+206F (reserved for format characters)
_BEYOND_C0 = (
    "\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# in JSON text a raw tab, newline or carriage return is indentation (an encoder escapes them
# inside strings): left as they are
_UNSAFE_JSON = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{_BEYOND_C0}]")
LIMIT = 200  # characters of one raw value (a key, an id) printed before it is cut


def _escape(m: re.Match[str]) -> str:
    cp = ord(m.group())
    if cp < 0x100:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _json_escape(m: re.Match[str]) -> str:
    cp = ord(m.group())
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000  # JSON has no 6-digit escape: a UTF-16 surrogate pair
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def cut(s: str, limit: int | None) -> str:
    """``s`` itself, or its first ``limit`` characters and how many more there were."""
    if limit is None or len(s) <= limit:
        return s
    return f"{s[:limit]}…(+{len(s) - limit} chars)"


def visible(value: object, limit: int | None = None) -> str:
    """``value`` as text with every control, format and separator character escaped, cut
    at ``limit`` characters first (so the escapes cannot be cut in half)."""
    s = cut(value if isinstance(value, str) else str(value), limit)
    return _UNSAFE.sub(_escape, s)


def visible_json(text: str) -> str:
    """JSON text with the characters JSON leaves raw (DEL, C1, format and separators)
    written as ``\\uXXXX`` escapes; C0 in a JSON encoder's output is already escaped, and
    these characters can only stand inside JSON strings, where the escape means the same.
    Tabs and newlines are left: outside strings they are the encoder's indentation."""
    return _UNSAFE_JSON.sub(_json_escape, text)
