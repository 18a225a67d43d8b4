"""The pipeline's matched-latency check: does each search's net beat chance at its own latency?

For every search with a net, ``matched.n`` random nets of the same space (a study's sampled
space, the ``oneshot`` supernet's space, or DARTS's supernet) whose deployed latency lies within
``matched.tolerance`` of the searched net's, retrained with the pipeline's recipe and seeds and
ranked with it by hold-out Y-PSNR (the recipe's ``data.val``: a split of the training images,
never a test set). Goal: the searched net in the top quarter. With two or more seeds the table
also says how much of each verdict is seed noise (:func:`rank_noise`): at a short recipe one
retraining varies by about as much as the nets of one latency differ, and a rank is then the
seeds' as much as the net's.

One pool of uniform draws per space serves every search of it (:meth:`Matched.draw`): each
draw is timed interleaved with the budget's reference net (SPAN where none is set) as a trial
is
(:func:`~searchers.trials.trial.reference_latency_ratio`), the searched nets too, and drawing
stops once every searched net has ``n`` draws within the tolerance or after
``matched.max_draws``. A search takes the first ``n`` matching draws in draw order, so searches
of similar latency share their random nets and each is retrained once. A net so cheap (or
dear) that the draws never land near it sits in a corner of the space: the table says so and
gives its rank among the few found, without a verdict.

Files: ``matched/SPACE/draws.json`` (written after every draw: a killed draw resumes), the
random nets' retrainings in ``retrain/matched_SPACEk_sSEED``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from results.run_folder import RunFolder
from search_space.files import atomic_write_text

if TYPE_CHECKING:
    from search_space import Genotype

logger = logging.getLogger("searchers.stages.matched")


def space_key(method: str) -> str:
    """The space a method's nets are drawn from: DARTS's supernet, the ``oneshot`` supernet's
    space, or the studies' sampled space (random, NSGA-II, TPE, GP and ``params`` alike)."""
    return method if method in ("darts", "oneshot") else "trials"


class _Uniform:
    """A :class:`~searchers.trials.sampled_space.Suggester` that draws every choice uniformly."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return choices[int(self.rng.integers(len(choices)))]

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))


def random_derived(net: Any, rng: np.random.Generator) -> Genotype:
    """A net of DARTS supernet ``net`` with every slot's op (a cell type's slot too) drawn
    uniformly."""
    return net.derive({op.slot: op.candidates[int(rng.integers(len(op.candidates)))]
                       for op in net.mixed_ops()})


def hold_out_psnr(run_dir: Path) -> float:
    """The last hold-out Y-PSNR a retraining logged (NaN: none)."""
    log = RunFolder(run_dir).log
    if not log.exists():
        return math.nan
    with log.open() as f:
        values = [r["val_psnr_y_db"] for r in csv.DictReader(f) if r.get("val_psnr_y_db")]
    return float(values[-1]) if values else math.nan


def rank_of(searched: float, others: list[float]) -> tuple[int, int, bool]:
    """(rank of ``searched`` among itself and ``others``, how many, in the top quarter?)."""
    rank = 1 + sum(o > searched for o in others)
    of = 1 + len(others)
    return rank, of, rank <= _quarter(of)


def _quarter(of: int) -> int:
    """The last rank of the top quarter of ``of`` nets."""
    return max(1, of // 4)


def rank_noise(own: Sequence[float], others: Sequence[Sequence[float]], *,
               redraws: int = 10_000, seed: int = 0) -> dict[str, float]:
    """How much of the check's verdict is seed noise, from the nets' per-seed PSNRs.

    ``own`` and each of ``others`` hold one PSNR per retraining seed. Returns

    * ``seed_sd``: the pooled standard deviation of one retraining over seeds (every net's
      spread about its own mean, ``sum(k - 1)`` degrees of freedom);
    * ``se``: the standard error of a net's mean over its seeds (``seed_sd / sqrt(k)``);
    * ``reliability``: the share of the spread among the nets' means that is not seed noise,
      ``1 - se^2 / var(means)`` (floored at 0): near 1 the ranks are the nets', near 0 they are
      the seeds';
    * ``p_top_quarter``: the share of ``redraws`` in which, every net's mean moved by a normal
      draw of its standard error, the searched net still ranks in the top quarter: near 0 or
      1 the verdict stands; near one half a re-run with other seeds can reverse it. It starts
      from the observed means, so it only means something where the reliability is high
      (:func:`noise_line` gives no verdict under 0.5).

    All NaN with a single seed (no spread to pool) or fewer than two nets.
    """
    runs = [list(own), *map(list, others)]
    nan = {"seed_sd": math.nan, "se": math.nan, "reliability": math.nan,
           "p_top_quarter": math.nan}
    if len(runs) < 2 or any(len(r) < 2 for r in runs) or not all(
            math.isfinite(v) for r in runs for v in r):
        return nan
    means = np.array([statistics.fmean(r) for r in runs])
    ss = sum(sum((v - m) ** 2 for v in r) for r, m in zip(runs, means, strict=True))
    dof = sum(len(r) - 1 for r in runs)
    seed_sd = math.sqrt(ss / dof)
    k = np.array([len(r) for r in runs], dtype=float)
    se = seed_sd / np.sqrt(k)
    spread = float(np.var(means, ddof=1))
    reliability = max(0.0, 1 - float(np.mean(se ** 2)) / spread) if spread > 0 else 0.0
    rng = np.random.default_rng(seed)
    moved = means + rng.standard_normal((redraws, len(runs))) * se
    rank = 1 + (moved[:, 1:] > moved[:, :1]).sum(axis=1)
    top = _quarter(len(runs))
    return {"seed_sd": seed_sd, "se": float(np.mean(se)), "reliability": reliability,
            "p_top_quarter": float((rank <= top).mean())}


def settled(noise: dict[str, float]) -> str:
    """What :func:`rank_noise`'s figures leave of a verdict: ``"unknown"`` (one seed),
    ``"none"`` (reliability under 0.5: the ranks are mostly the seeds'), ``"noise"`` (the
    searched net's side of the quarter's edge flips in over 10 % of noise redraws) or
    ``"stands"``."""
    if not math.isfinite(noise["seed_sd"]):
        return "unknown"
    if noise["reliability"] < 0.5:
        return "none"
    p = noise["p_top_quarter"]
    return "stands" if p >= 0.9 or p <= 0.1 else "noise"


SETTLED_TEXT = {
    "none": "**no verdict**: the nets' means differ little more than seed noise alone would "
            "make them, so the ranks are mostly the seeds'",
    "noise": "**within the seed noise**: a re-run with other seeds can reverse it",
    "stands": "the verdict stands"}


def noise_line(noise: dict[str, float], seeds: int) -> str:
    """One sentence on :func:`rank_noise`'s figures, for the check's tables."""
    state = settled(noise)
    if state == "unknown":
        return ("One retraining seed: its noise is unknown, so the rank below may be the "
                "seed's; give two or more seeds.")
    p = noise["p_top_quarter"]
    return (f"Seed noise: one retraining varies by {noise['seed_sd']:.3f} dB (pooled SD over "
            f"{seeds} seeds), a net's mean by {noise['se']:.3f} dB; reliability of the means "
            f"{noise['reliability']:.2f} (the share of their spread that is not seed noise). "
            f"Redrawing that noise 10 000 times, the searched net stays in the top quarter in "
            f"{p:.0%}: {SETTLED_TEXT[state]}.")


class Matched:
    """The check over one pipeline (a :class:`~searchers.stages.pipeline.Pipeline`)."""

    def __init__(self, pipeline: Any) -> None:
        self.p = pipeline
        self.cfg = pipeline.cfg.matched
        self.root = pipeline.root / "matched"

    # -- what is checked --------------------------------------------------------------------

    def searched(self) -> dict[str, list[tuple[str, Genotype]]]:
        """Per space, ``(label, net)`` of every search that handed over a net (of
        ``matched.search_seeds`` where set)."""
        from search_space import Genotype

        sel = self.p.root / "selected"
        out: dict[str, list[tuple[str, Genotype]]] = {}
        only = self.cfg.search_seeds
        for s in self.p.searches():
            if only is not None and s.seed is not None and s.seed not in only:
                continue
            path = sel / f"{s.label}.json"
            if path.exists():
                out.setdefault(space_key(s.method), []).append((s.label, Genotype.load(path)))
        return out

    def spaces(self) -> list[str]:
        return list(self.searched()) if self.cfg.n else []

    def _path(self, space: str) -> Path:
        return self.root / space / "draws.json"

    def _load(self, space: str) -> dict[str, Any]:
        path = self._path(space)
        if path.exists():
            return dict(json.loads(path.read_text()))
        return {"space": space, "targets": {}, "draws": [], "done": False}

    def complete(self, space: str) -> bool:
        """Whether the pool of ``space`` is drawn for every search of it handed over now."""
        saved = self._load(space)
        return saved["done"] and all(
            label in saved["targets"] for label, _ in self.searched().get(space, []))

    # -- drawing ----------------------------------------------------------------------------

    def _sampler(self, space: str) -> Callable[[np.random.Generator], Genotype]:
        if space == "darts":
            from searchers.differentiable.supernet import SuperNet

            net = SuperNet(self.p.cfg.darts.space.supernet_spec())
            return lambda rng: random_derived(net, rng)
        from searchers.trials.sampled_space import sample_genotype

        sampled = self.p.cfg.trials.space
        if space == "oneshot":
            from searchers.trials.supernet_space import space_of_supernet

            first = next(s for s in self.p.searches() if s.method == "oneshot")
            sampled = space_of_supernet(str(self.p.supernet_dir(first)), sampled)
        return lambda rng: sample_genotype(_Uniform(rng), sampled)

    def _ratio(self, genotype: Genotype) -> float:
        from search_space import build_model
        from search_space.zoo import REFERENCE_NET
        from searchers.trials.trial import reference_latency_ratio

        t = self.p.cfg.trials
        budget = replace(t.budget, reference=t.budget.reference or REFERENCE_NET)
        return reference_latency_ratio(build_model(genotype), budget, t.measure.settings(),
                                       genotype.scale)

    def _wanting(self, saved: dict[str, Any]) -> list[str]:
        """The searches of the pool with fewer than ``n`` matching draws so far."""
        return [label for label in saved["targets"]
                if len(self.assigned(saved, label)) < self.cfg.n]

    def assigned(self, saved: dict[str, Any], label: str) -> list[int]:
        """Indices of the first ``n`` draws within the tolerance of ``label``'s latency."""
        target = saved["targets"][label]
        out = []
        for k, d in enumerate(saved["draws"]):
            if d.get("same_as") == label or not math.isfinite(d["latency_ratio"]):
                continue
            if abs(d["latency_ratio"] / target - 1) <= self.cfg.tolerance:
                out.append(k)
                if len(out) == self.cfg.n:
                    break
        return out

    def draw(self, space: str) -> None:
        """The pool of ``space``: the searched nets' latency ratios, then uniform draws until
        each has ``n`` within the tolerance (or ``max_draws``); saved after every draw."""
        saved = self._load(space)
        path = self._path(space)
        path.parent.mkdir(parents=True, exist_ok=True)
        searched = self.searched()[space]
        for label, g in searched:
            if label not in saved["targets"]:
                saved["targets"][label] = self._ratio(g)
                logger.info("matched %s: %s at %.3fx the reference", space, label,
                            saved["targets"][label])
                atomic_write_text(path, json.dumps(saved, indent=1) + "\n")
        sample = self._sampler(space)
        rng = np.random.default_rng([self.cfg.seed, sum(map(ord, space))])
        for _ in saved["draws"]:  # replay the draws already made
            sample(rng)
        wanting = self._wanting(saved)
        while wanting and len(saved["draws"]) < self.cfg.max_draws:
            g = sample(rng)
            same = next((label for label, s in searched if s == g), None)
            d: dict[str, Any] = {"genotype": g.to_dict(), "latency_ratio": self._ratio(g)}
            if same:
                d["same_as"] = same
            saved["draws"].append(d)
            atomic_write_text(path, json.dumps(saved, indent=1) + "\n")
            wanting = self._wanting(saved)
            if len(saved["draws"]) % 10 == 0:
                logger.info("matched %s: %d draws, %d searches still short of %d", space,
                            len(saved["draws"]), len(wanting), self.cfg.n)
        saved["done"] = True
        atomic_write_text(path, json.dumps(saved, indent=1) + "\n")
        if wanting:
            logger.warning("matched %s: after %d draws, %s still short of %d random nets "
                           "within +-%.0f %%: corners of the space", space, len(saved["draws"]),
                           ", ".join(wanting), self.cfg.n, 100 * self.cfg.tolerance)

    def jobs(self) -> list[tuple[str, Genotype]]:
        """``(label, net)`` of every random net some search was matched with, to retrain."""
        from search_space import Genotype

        out = []
        for space in self.spaces():
            saved = self._load(space)
            if not saved["done"]:
                continue
            used = sorted({k for label in saved["targets"] for k in self.assigned(saved, label)})
            out += [(f"matched_{space}{k}", Genotype.from_dict(saved["draws"][k]["genotype"]))
                    for k in used]
        return out

    # -- the verdict ------------------------------------------------------------------------

    def _psnrs(self, label: str) -> list[float]:
        """``label``'s hold-out PSNR per retraining seed (NaN where not retrained)."""
        return [hold_out_psnr(self.p.root / "retrain" / f"{label}_s{seed}")
                for seed in self.p.cfg.pipeline.seeds]

    @staticmethod
    def _mean(values: list[float]) -> float:
        return statistics.fmean(values) if all(map(math.isfinite, values)) else math.nan

    def rows(self) -> list[dict[str, Any]]:
        """Per search with a net: its latency ratio, the random nets found, their hold-out
        PSNRs (NaN until retrained), the searched net's, its rank and the verdict."""
        out = []
        for space, searched in self.searched().items():
            saved = self._load(space)
            for label, _ in searched:
                if label not in saved["targets"]:
                    continue
                picked = self.assigned(saved, label)
                others_seeds = [self._psnrs(f"matched_{space}{k}") for k in picked]
                own_seeds = self._psnrs(label)
                others = [self._mean(v) for v in others_seeds]
                own = self._mean(own_seeds)
                row: dict[str, Any] = {
                    "search": label, "space": space, "latency_ratio": saved["targets"][label],
                    "found": len(picked), "draws": len(saved["draws"]), "psnr_db": own,
                    "random_db": others, "corner": len(picked) < self.cfg.n}
                if picked and math.isfinite(own) and all(map(math.isfinite, others)):
                    row["rank"], row["of"], row["top_quarter"] = rank_of(own, others)
                    row["noise"] = rank_noise(own_seeds, others_seeds)
                out.append(row)
        return out

    def table(self) -> str:
        """The check's section of ``pipeline.md``."""
        c = self.cfg
        rows = self.rows()
        if not c.n or not rows:
            return ""
        lines = [f"Matched-latency check: each search's net against {c.n} random nets of its "
                 f"space whose latency (timed interleaved with the reference, deployed form) "
                 f"lies within +-{c.tolerance:.0%} of its own, all retrained with the same recipe "
                 f"and seeds {self.p.cfg.pipeline.seeds}; ranked by hold-out Y-PSNR (the "
                 "selection split of the training images). Goal: the top quarter.", "",
                 "Seed noise: P(top quarter) is the share of 10 000 redraws of the seed noise "
                 "(each net's mean moved by its standard error) in which the searched net stays "
                 "in the top quarter; near one half, another set of seeds can reverse the "
                 "verdict. Reliability: the share of the spread among the means that is not "
                 "seed noise; under 0.5 the ranks are mostly the seeds', and the verdict is "
                 "none.", "",
                 "| search | space | latency x ref | random nets found (draws) | its hold-out "
                 "Y-PSNR | random median | rank | top quarter | P(top quarter) | reliability |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        tally: dict[str, list[tuple[bool, str]]] = {}
        method = {s.label: s.method for s in self.p.searches()}
        for r in rows:
            others = [v for v in r["random_db"] if math.isfinite(v)]
            median = f"{statistics.median(others):.2f}" if others else "-"
            p = rel = "-"
            if "rank" not in r:
                rank, verdict = "-", "not yet retrained" if r["found"] else "-"
            else:
                rank = f"{r['rank']} of {r['of']}"
                verdict = ("corner: too few near it" if r["corner"] else
                           "yes" if r["top_quarter"] else "**no**")
                noise = r["noise"]
                state = settled(noise)
                if not r["corner"]:
                    tally.setdefault(method[r["search"]], []).append((r["top_quarter"], state))
                if state == "unknown":
                    p = rel = "one seed"
                else:
                    p, rel = f"{noise['p_top_quarter']:.0%}", f"{noise['reliability']:.2f}"
                if not r["corner"] and state in ("none", "noise"):
                    verdict += (" (no verdict: the ranks are mostly seed noise)"
                                if state == "none" else " (within the seed noise)")
            lines.append(f"| {r['search']} | {r['space']} | {r['latency_ratio']:.2f} | "
                         f"{r['found']} of {c.n} ({r['draws']}) | {r['psnr_db']:.2f} | "
                         f"{median} | {rank} | {verdict} | {p} | {rel} |")
        if tally:
            lines += ["", "In the top quarter by rank: " + "; ".join(
                f"{m} {sum(top for top, _ in v)} of {len(v)} (verdicts beyond the seed noise: "
                f"{sum(top and s == 'stands' for top, s in v)} in, "
                f"{sum(not top and s == 'stands' for top, s in v)} out)"
                for m, v in tally.items()) + "."]
        return "\n".join(lines)
