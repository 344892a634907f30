"""Run by Python at start-up in every process the tests start (see loopback_guard.py): no
process of the test suite resolves a host beyond loopback. Another ``sitecustomize`` later on
the path still runs."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

from loopback_guard import install

install()

_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _spec is not None and _spec.loader is not None and _spec.origin != os.path.abspath(__file__):
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
