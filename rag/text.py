"""Small text helpers shared by every layer."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+")  # a word, for counting and matching (letters, digits and _ in any script)
# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep_lines: bool = False) -> str:
    """`text` safe for a terminal or a text log line: control characters (newlines, ANSI escapes, bidi
    overrides) from file names, zip members or documents are written as escapes, never interpreted.
    `keep_lines`: newlines and tabs stay (an answer's paragraphs), every other control is escaped."""
    if keep_lines:
        return "\n".join(printable(line).replace("\\x09", "\t") for line in text.split("\n"))
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)
