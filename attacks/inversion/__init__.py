"""Inversion attacks: recover the users' distributions (and traits) from their uploads.

* :class:`ParameterInversion`: MLE from k linked uploads against the Cramér-Rao bound.
* :class:`MixtureInversion`: EM over the whole pool (the empirical test of identifiability).
* :class:`AttributeInference`: a private trait from probing the cloud model with fixed texts.
"""

from attacks.inversion.attribute import AttributeInference
from attacks.inversion.betamix import BetaMixture
from attacks.inversion.mixture import MixtureInversion
from attacks.inversion.parameter import ParameterInversion

__all__ = ["AttributeInference", "BetaMixture", "MixtureInversion", "ParameterInversion"]
