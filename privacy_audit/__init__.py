"""privacy_audit: what can be proven or bounded about IDfree-PL privacy.

Symbolic identifiability of finite mixtures (Teicher 1963; Yakowitz and Spragins 1968) and
Bayes-optimal misattribution with its proximity bound.  Imports no other package of the project.
"""
