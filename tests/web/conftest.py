"""Fixtures for the review-site tests (helpers live in uniquely named modules)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from web_site import site

__all__ = ["site"]
