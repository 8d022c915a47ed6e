"""attacks: what an adversary can actually do with a pool of anonymous uploads.

Scikit-learn style: hyperparameters in ``__init__``, ``fit(pool)`` returns ``self``, fitted state
ends in ``_``, ``random_state`` everywhere.  Scoring against the oracle is shared (``attacks.base``).
Imports ``privacy_audit`` (ceilings) and the file contract in ``idfree_core.uploads`` only.
"""
