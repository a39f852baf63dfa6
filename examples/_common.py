"""Sizes for the examples: realistic by default, small when ATTNCOMP_FAST=1 (as in CI)."""

import os

FAST = os.environ.get("ATTNCOMP_FAST") == "1"
LENGTH = 4096 if FAST else 32768
