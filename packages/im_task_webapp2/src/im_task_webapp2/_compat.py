"""Imports webapp2 3.0.0b1 quietly on every supported Python.

webapp2 3.0.0b1 is the only webapp2 release for Python 3, and it shows its age:

* it imports the ``cgi`` module, which warns (``DeprecationWarning``) on
  Python 3.12 and is gone from Python 3.13; the ``legacy-cgi`` package (a
  dependency of this package and of WebOb on 3.13) provides it there;
* its source has invalid escape sequences in docstrings, which warn when the
  module is compiled without a cached ``.pyc``.

Neither affects how it runs, so the import below silences exactly these
warnings. If your code imports ``webapp2`` before ``im_task_webapp2``, you may
still see them once; they are harmless.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"'cgi' is deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"invalid escape sequence", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"invalid escape sequence", category=SyntaxWarning)
    import webapp2

__all__ = ["webapp2"]
