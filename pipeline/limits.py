"""Limits shared by the stages that read pages (files, fetches) and the parser.

A neutral home so that reading a page does not import the parser, nor the parser a reader.
"""

from __future__ import annotations

#: Pages larger than this (bytes, as read or decoded) are refused, never parsed.
MAX_PAGE_BYTES = 5 * 1024 * 1024
