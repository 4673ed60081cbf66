"""Tests and nbval run at the `ci` preset unless told otherwise (COURSE.md §5)."""
import os

os.environ.setdefault("MINIDALLE_PRESET", "ci")
os.environ.setdefault("MINIDALLE_QUIET", "1")
