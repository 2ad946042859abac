"""Text that people type and others read: names, case numbers, reasons.

Characters of Unicode category C* — controls, format characters such as the bidi
overrides (U+202E turns what follows around on screen), surrogates, private use and
unassigned code points — are refused wherever such text enters (ids, names, case
numbers, reasons): once on record they would mislead every reader, and records are
never rewritten. Pages also isolate ids (``<bdi>``).

>>> plain("AZ 4711/26"), plain("kod-cam-\\u202e70")
(True, False)
"""

from __future__ import annotations

import unicodedata


def plain(text: str) -> bool:
    """No control, format, surrogate, private-use or unassigned character in ``text``."""
    return not any(unicodedata.category(ch).startswith("C") for ch in text)


def check_plain(text: str, what: str) -> str:
    """``text``, or ValueError naming ``what`` and the first offending character."""
    for ch in text:
        if unicodedata.category(ch).startswith("C"):
            raise ValueError(f"{what} contains the invisible or control character U+{ord(ch):04X} "
                             f"({unicodedata.name(ch, 'unnamed')}); type it without")
    return text
