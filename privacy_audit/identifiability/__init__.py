"""Identifiability of finite mixtures via linear (in)dependence of the family.

By Yakowitz and Spragins (1968), finite mixtures of a family are identifiable iff the family is
linearly independent; Teicher (1963) gives the transform-ordering criterion used for proofs.
``decide(family)`` returns a :class:`Verdict` backed by a verified certificate of dependence
(``sum_i c_i f_i == 0``), a written independence proof, or an honest "unknown";
``numeric_screen`` gives SVD-rank evidence that is labelled as such.
"""

from .decide import decide
from .dependence import verify_certificate
from .screen import ScreenResult, numeric_screen
from .verdict import Certificate, Verdict

__all__ = ["decide", "numeric_screen", "verify_certificate", "Verdict", "Certificate",
           "ScreenResult"]
