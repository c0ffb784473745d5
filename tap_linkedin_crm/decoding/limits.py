"""Size limits that keep decoding in bounded memory whatever the file holds."""

from __future__ import annotations

__all__ = ["MAX_FIELD_CHARS", "MAX_RECORD_BYTES"]

MAX_FIELD_CHARS = 3 * 512 * 1024
"""Largest field accepted, in characters (1.5 Mi); a longer one (e.g. a lost quote) is malformed.

One and a half times the largest text field either CRM stores (Dynamics 365 "multiple lines of
text": 1,048,576 characters; Salesforce long text area: 131,072). Small enough for memory: the
csv parser builds a field in a buffer of 4 bytes per character, and the finished `str` takes up
to 4 bytes per character again (one non-Latin-1 character widens the whole string), so a field
at the limit costs at most 12 MiB, and an unterminated quote followed by ordinary lines is
refused with a 6 MiB buffer. (The 64 Mi characters allowed before meant a 256 MiB buffer.)
"""

MAX_RECORD_BYTES = 4 * MAX_FIELD_CHARS
"""Longest record accepted, in bytes (6 MiB): one line, LF included, or several lines joined
by quoted line breaks.

A field at `MAX_FIELD_CHARS` fits (UTF-8 takes at most 4 bytes per character). A file without
LF line breaks (CR-only line endings, or none at all) is refused once this much has been read
without one, never read whole; a record whose quoted line breaks run on past it is refused
within 2 MiB more (records are measured per read of 1 MiB, not per row). This bound is what
bounds memory on any input: a record of tiny fields takes about 26 times its size (a `str`
object and a list slot per 2-character field), about 210 MiB for 8 MiB, and the line being
parsed is held at most three times (its bytes as read, joined, and decoded). Peak RSS of
decoding any input, well-formed or not, stays well under 300 MiB: tests/test_csv_decoding.py
measures the worst inputs.
"""
