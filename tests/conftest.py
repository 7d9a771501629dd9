"""Tests mirror the package tree (tests/<package>/test_*.py); the shared builders (``_*_util.py``)
live here, at the top of the tree, importable from every folder."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
