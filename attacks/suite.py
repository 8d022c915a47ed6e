"""The attack suite: every attack against one pool, scored against the oracle when there is one.

:func:`run_attacks` is what ``idfree-audit attack`` and the sweeps call.  The default adversary does
not know the number of users: BIC chooses it unless held-out likelihood finds more users, or BIC
alone finds one user, then AIC (:func:`attacks.oracle_free.estimate_users`; on 200 users x 30 uploads in 32 dimensions BIC
collapses to 1 user, held-out likelihood to about 25, AIC gives about 150), see :meth:`SuiteContext.n_users`,
and the estimate is reused by the likelihood-ratio linkage and the mixture inversion, so the
model selection runs once.  The oracle and the true distributions are used only for scoring
(and, in parameter inversion, to select k linked uploads: see its docstring).

Attack groups (``attacks=``):

* ``clustering``: Gaussian mixture (covariance type by BIC, ``method="auto"``), and k-means, with
  the estimated number of users.  Given the oracle (``known_n_users=False`` switches it off),
  also the stronger adversary who knows the number of users (a deployment's user count is often
  public): ``clustering[auto][n_users known]`` and ``mixture_inversion[...][n_users known]`` (the
  latter only when the estimate differs); every clustering and mixture-inversion result states its
  assumption in ``details["assumption"]``.  Where held-out likelihood alone chooses another count,
  ``clustering[em][n_users held-out]`` is a second no-oracle adversary (:mod:`attacks.em`).
* ``linkage``: nearest-neighbour and likelihood-ratio linkage of later sessions to session 0.
* ``inversion``: mixture inversion (EM for the known or guessed family; the family and Beta's
  shared affine map are taken from the distributions file when given, as the system's public
  design) and, given the oracle and the true distributions, parameter inversion against the
  Cramér-Rao bound.  Embedding-only.
* ``attribute``: attribute inference, only when a ``model_fn`` and ``probe_texts`` are given.

With ``features="both"`` and a pool carrying text, clustering and linkage also run on text alone
and on embeddings alone, and :func:`attacks.text.marginal_leakage` reports what the embeddings add.
Under ``"both"`` the attacks add the two modalities' evidence (:mod:`attacks.evidence`) and the user
count is the embedding or the text estimate, whichever the joint evidence model prefers
(:func:`attacks.evidence.choose_k`); clustering also scores the joint fit from the start it did not
keep (``[joint, MODALITY start]``, :meth:`attacks.clustering.ClusteringAttack._fit_both`), and
the marginal leakage takes the stronger of the two; each feature set draws its seeds from its own stream
(:meth:`SuiteContext.seed`), so the embedding-only rows are those of ``features="embedding"``.
Identifier columns found in the uploads file are reported first among the findings, loudly.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from attacks import memo
from attacks.base import AttackResult, check_random_state
from idfree_core.seeding import seed_int
from attacks.text import FEATURE_SETS, MarginalLeakage, marginal_leakage
from idfree_core.errors import InputError

ATTACK_GROUPS = ("clustering", "linkage", "inversion", "attribute")
DEFAULT_ATTACKS = ("clustering", "linkage", "inversion")
MAX_LINKS_IN_SUMMARY = 1000
N_USERS_METHOD = ("by BIC over MAP-EM mixtures, or AIC where held-out likelihood (Smyth 2000) finds more "
                  "users than BIC (no oracle)")


@dataclass(frozen=True)
class AttackReport:
    """Everything the suite found: scored results, plain-language findings, oracle-free summary."""

    results: list[AttackResult]
    findings: list[str]
    summary: dict[str, Any]
    marginal: list[MarginalLeakage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"attacks": [r.to_dict() for r in self.results], "findings": list(self.findings),
                "summary": self.summary, "marginal": [m.to_dict() for m in self.marginal],
                "headline": self.headline(), "oracle_free_risk": self.summary.get("oracle_free_risk")}

    def headline(self) -> dict[str, Any]:
        """One comparable privacy number (:func:`attacks.headline.headline`): normalised attribution and
        linkage advantages over chance, the epsilon lower bound and Gaussian-DP mu, each with its CI."""
        from attacks.headline import headline

        return headline(self.results, self.summary)

    def best(self, metric: str) -> AttackResult | None:
        """The strongest result for ``metric`` (highest advantage in the attacker's direction)."""
        from attacks.base import METRICS

        rows = [r for r in self.results if r.metric == metric]
        if not rows:
            return None
        sign = 1.0 if METRICS[metric] else -1.0
        return max(rows, key=lambda r: sign * r.advantage)


def parse_attacks(attacks) -> tuple[str, ...]:
    """Validate attack group names (a comma-separated string or a sequence)."""
    names = [a.strip() for a in attacks.split(",")] if isinstance(attacks, str) else [str(a).strip() for a in attacks]
    names = [a for a in names if a]
    if not names:
        raise InputError(f"--attacks: no attack given; expected some of {list(ATTACK_GROUPS)}")
    bad = [a for a in names if a not in ATTACK_GROUPS]
    if bad:
        raise InputError(f"--attacks: unknown attack {bad[0]!r}; expected some of {list(ATTACK_GROUPS)}")
    return tuple(dict.fromkeys(names))


def identifier_finding(columns) -> str:
    cols = ", ".join(columns)
    return (f"PRIVACY FINDING: the uploads carry identifier column(s) [{cols}]: every upload is directly "
            "linkable to its user or device whatever the embeddings do; drop these columns before upload. "
            "(The attacks below ignore them.)")


@dataclass
class SuiteContext:
    """What ``run_attacks`` knows while building attacks (:meth:`attacks.base.Attack.for_suite`).

    ``n_users(features)``: the adversary's estimate of the number of users (computed once per
    feature set); ``n_true``: the count from the oracle for the "n_users known" adversary (``None``
    when off); ``skip(note)`` records why an attack did not run; ``fits``: mixtures fitted on large
    pools (:func:`attacks.scale.fit_scaled_mixture`), shared by the attacks that use the same features and ``k``.
    """

    pool: Any
    oracle: Any
    distributions: Any
    features: str
    rng: np.random.Generator
    n_true: int | None
    summary: dict
    model_fn: Callable | None = None
    probe_texts: Any = None
    traits: Any = None
    estimates: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)  # mixtures fitted at scale, shared by attacks (attacks.scale)
    heldout: dict = field(default_factory=dict)
    current: str | None = None
    streams: dict = field(default_factory=dict)

    n_users_method: str = N_USERS_METHOD

    def __post_init__(self) -> None:
        self._fresh = copy.deepcopy(self.rng)  # every feature set's stream starts here

    def seed(self) -> int:
        """A seed from the random stream of the feature set being attacked (``current``, else
        ``features``): one stream per feature set, each starting where ``rng`` started, so that the
        embedding-only (text-only) rows of a ``features="both"`` run are exactly those of a
        ``features="embedding"`` (``"text"``) run."""
        key = self.current or self.features
        if key not in self.streams:
            self.streams[key] = self.rng if not self.streams else copy.deepcopy(self._fresh)
        return seed_int(self.streams[key], bits=31)

    def n_users(self, features: str) -> int:
        before, self.current = self.current, features
        try:
            return self._n_users(features)
        finally:
            self.current = before

    def _n_users(self, features: str) -> int:
        """The adversary's user count (:meth:`n_users_heldout`: BIC, or AIC where held-out likelihood finds
        more users than BIC; computed once per feature set)."""
        if features == "both" and features not in self.estimates:
            from attacks.evidence import choose_k  # the joint evidence model picks one modality's count

            cands = (self.n_users("embedding"), self.n_users("text"))
            self.estimates[features] = choose_k(self.pool, cands, random_state=self.seed(), cache=self.fits)
        if features not in self.estimates:
            k, (lo, hi) = self.n_users_heldout(features)
            self.estimates[features] = (k, {})
            self.summary.setdefault("n_users_range", [int(lo), int(hi)])
            self.summary.setdefault("n_users_by", {**self.n_users_by(features), "chosen": int(k)})
        return self.estimates[features][0]

    def transform(self, features: str):
        """The shared affine map of a (0, 1) family (Beta, Kumaraswamy) from the distributions file (public
        design), else ``None``."""
        from attacks.inversion.estimators import is_unit_affine
        from idfree_core.families import get_family_spec

        d = self.distributions
        if features != "embedding" or d is None or not is_unit_affine(get_family_spec(d.family)):
            return None
        return (d.loc, d.scale)

    def n_users_heldout(self, features: str) -> tuple[int, tuple[int, int]]:
        """The user-count estimate and its range (:func:`attacks.oracle_free.estimate_users`), once per
        feature set; the no-oracle risk summary uses it."""
        if features not in self.heldout:
            from attacks.em import em_features
            from attacks.oracle_free import _auto_transform, estimate_users

            transform = self.transform(features) or _auto_transform(self.pool, features)
            x = em_features(self.pool, features, transform, random_state=self.seed())
            self.heldout[features] = estimate_users(x, random_state=self.seed())
        return self.heldout[features][:2]

    def n_users_by(self, features: str) -> dict[str, int]:
        """Each criterion's user count behind :meth:`n_users_heldout` (``{}`` before it ran for ``features``)."""
        return self.heldout[features][2] if features in self.heldout else {}

    def n_references(self) -> int:
        """Reference rows of the linkage split (session 0, or half the pool)."""
        sessions = self.pool.sessions()
        return int((sessions == 0).sum()) if np.any(sessions >= 1) else self.pool.n // 2

    def skip(self, note: str) -> None:
        if note not in self.summary["skipped"]:
            self.summary["skipped"].append(note)


@memo.scoped  # what several attacks derive identically from the pool is computed once per run (attacks.memo)
def run_attacks(pool, oracle=None, distributions=None, attacks=DEFAULT_ATTACKS, features: str = "embedding",
                random_state=0, progress: bool = True, identifier_columns=(), marginal="auto",
                model_fn: Callable | None = None, probe_texts=None, traits=None,
                known_n_users: bool | None = None, heartbeat_s: float = 10.0) -> AttackReport:
    """Run the attack groups on ``pool``; score them if an ``oracle`` is given (see module doc).

    Iterates :func:`attacks.base.registered_attacks` (``in_suite`` entries of the requested groups);
    each registered class builds its instances with ``for_suite`` (no per-attack branches here).
    ``known_n_users``: also run the stronger adversary who knows the number of users (the count
    comes from the oracle); ``None`` (default) does so whenever an ``oracle`` is given, since a
    deployment's user count is often public and a privacy claim must survive the strongest attack.
    ``progress``: a tqdm bar on stderr (never stdout), redrawn every ``heartbeat_s`` seconds while
    one attack runs (:func:`idfree_core.progress.heartbeat`) so that long steps show signs of life.
    """
    from tqdm.auto import tqdm

    from attacks.base import registered_attacks

    groups = parse_attacks(attacks)
    if features not in FEATURE_SETS:
        raise InputError(f"--features must be one of {list(FEATURE_SETS)}, got {features!r}")
    if features in ("text", "both") and pool.text is None:
        raise InputError(f"--features {features}: the uploads have no 'text' column")
    if oracle is not None:
        _, names = oracle.codes_for(pool)  # InputError if the oracle does not cover the pool
        if distributions is not None:
            missing = sorted(set(names) - set(distributions.users))
            if missing:
                raise InputError(f"distributions: {len(missing)} users of the oracle have no distribution "
                                 f"(e.g. {missing[0]!r})")
    if distributions is not None and distributions.dim != pool.dim:
        raise InputError(f"distributions have {distributions.dim} dimensions but the uploads have {pool.dim}")
    do_marginal = (features == "both") if marginal == "auto" else bool(marginal)
    feature_sets = FEATURE_SETS if do_marginal and pool.text is not None else (features,)

    results: list[AttackResult] = []
    findings: list[str] = [identifier_finding(identifier_columns)] if identifier_columns else []
    summary: dict[str, Any] = {
        "n_uploads": pool.n, "dim": pool.dim, "n_tokens": pool.n_tokens, "has_text": pool.text is not None,
        "sessions": {str(s): int(c) for s, c in zip(*np.unique(pool.sessions(), return_counts=True))},
        "features": features, "scored": oracle is not None, "identifier_columns": list(identifier_columns),
        "skipped": [],
    }
    if known_n_users is None:
        known_n_users = oracle is not None
    n_true = int(np.unique(oracle.codes_for(pool)[0]).size) if oracle is not None and known_n_users else None
    ctx = SuiteContext(pool=pool, oracle=oracle, distributions=distributions, features=features,
                       rng=check_random_state(random_state), n_true=n_true, summary=summary, model_fn=model_fn,
                       probe_texts=probe_texts, traits=traits)

    steps = []
    for group in ATTACK_GROUPS:
        if group not in groups:
            continue
        for spec in registered_attacks(group):
            if not spec.in_suite:
                continue
            usable = [f for f in feature_sets if f in spec.features]
            if not usable and "embedding" in spec.features and features != "text":
                usable = ["embedding"]  # embedding-only attacks (inversion) still run under features=both
            if not usable:
                ctx.skip(f"{group}: {spec.name} runs on {'/'.join(spec.features)} features, "
                         f"not applicable to features={features}")
            primary = features if features in usable else (usable[0] if usable else None)
            steps += [(spec, f, f == primary) for f in usable]

    from idfree_core.progress import heartbeat

    bar = tqdm(steps, desc="attacks", disable=not progress, file=sys.stderr)
    with heartbeat(bar, heartbeat_s):
        for spec, feats, is_primary in bar:
            bar.set_postfix_str(f"{spec.name}[{feats}]")
            ctx.current = feats
            fitted: set[int] = set()
            for attack, opts in spec.cls.for_suite(ctx, spec, feats):
                if id(attack) not in fitted:
                    attack.fit(pool)
                    fitted.add(id(attack))
                main = not (opts.get("known_n") or opts.get("secondary"))
                if is_primary and hasattr(attack, "suite_summary") and main:
                    attack.suite_summary(ctx)
                if oracle is None:
                    continue
                for r in attack.score(pool, oracle, distributions, **opts.get("score_kw", {})):
                    if "n_users" in opts:
                        r = _with_assumption(r, n_true if opts.get("known_n") else None, opts["n_users"])
                    if opts.get("suffix"):
                        r = replace(r, name=f"{r.name}{opts['suffix']}")
                    results.append(r)
                if is_primary and getattr(attack, "finding_", None) and main:
                    findings.append(attack.finding_)
    bar.close()
    if "n_users_estimated" not in summary and ctx.estimates:
        summary["n_users_estimated"] = next(iter(ctx.estimates.values()))[0]

    ctx.current = features
    if oracle is None and ({"clustering", "linkage"} & set(groups)) and pool.n >= 8:
        summary["oracle_free_risk"] = _oracle_free(ctx, features)

    marg = marginal_leakage(results) if len(feature_sets) > 1 else []
    if marg:
        findings.append(_marginal_finding(marg))
    if oracle is not None:
        findings.extend(_beats_chance(results))
    # results from the secondary feature sets stay in results; the primary ones come first
    results.sort(key=lambda r: (r.features != features,))
    return AttackReport(results=results, findings=findings, summary=summary, marginal=marg)


def _oracle_free(ctx: SuiteContext, features: str) -> dict:
    """The model-based risk an auditor without an oracle can report (:mod:`attacks.oracle_free`)."""
    from attacks.oracle_free import oracle_free_risk

    k, k_range = ctx.n_users(features), ctx.n_users_heldout(features)[1]
    return oracle_free_risk(ctx.pool, features, ctx.transform(features), n_users=k, n_users_range=k_range,
                            random_state=ctx.seed(), mixture_cache=ctx.fits)


def _with_assumption(result: AttackResult, n_true: int | None, how_estimated: str = N_USERS_METHOD) -> AttackResult:
    """State what the adversary knew about the number of users (name suffix and details)."""
    if n_true is None:
        how = f"number of users unknown: estimated from the pool {how_estimated}"
        return replace(result, details={**result.details, "assumption": how})
    how = (f"stronger adversary: knows the number of users ({n_true}), e.g. a deployment's public user count; "
           "the estimate is not used")
    return replace(result, name=f"{result.name}[n_users known]", details={**result.details, "assumption": how})


def _marginal_finding(marg: list[MarginalLeakage]) -> str:
    """One line: on how many metrics the embeddings add significant leakage beyond the text."""
    significant = [m for m in marg if m.ci[0] > 0]
    if not significant:
        return (f"the embeddings add no significant leakage beyond the text on any of {len(marg)} attack metrics "
                "(every marginal CI reaches 0)")
    top = max(significant, key=lambda m: m.ci[0])
    return (f"the embeddings add leakage beyond the text on {len(significant)} of {len(marg)} attack metrics; "
            f"clearest: {top.name} {top.metric} {top.text:.3f} (text) -> {top.both:.3f} (text+embeddings), "
            f"marginal {top.marginal:+.3f} [{top.ci[0]:+.3f}, {top.ci[1]:+.3f}]")


def _beats_chance(results: list[AttackResult]) -> list[str]:
    """One line per metric family where some attack beats chance with confidence."""
    from attacks.base import METRICS

    out = []
    for metric in ("attribution_accuracy", "linkage_top1"):
        rows = [r for r in results if r.metric == metric]
        if not rows:
            continue
        best = max(rows, key=lambda r: r.advantage if METRICS[metric] else -r.advantage)
        if best.advantage_ci[0] > 0:
            eff = f", {best.efficiency:.0%} of the Bayes ceiling {best.ceiling:.3f}" if best.efficiency is not None else ""
            out.append(f"{best.name} ({best.features}) beats chance: {metric} {best.value:.3f} "
                       f"[{best.ci[0]:.3f}, {best.ci[1]:.3f}] vs chance {best.baseline:.3f}{eff}")
        else:
            out.append(f"no attack beats chance on {metric} (best: {best.name}, {best.value:.3f} vs chance "
                       f"{best.baseline:.3f}, advantage CI [{best.advantage_ci[0]:+.3f}, {best.advantage_ci[1]:+.3f}])")
    return out
