"""idfree_core: the compact identifier-free personalized learning (IDfree-PL) system under audit.

Data flows one way: ``data`` -> ``device`` -> ``uploads`` -> ``cloud``.  This package imports
none of ``privacy_audit``, ``attacks`` or ``reports``.
"""

from idfree_core.errors import InputError

__all__ = ["InputError"]
