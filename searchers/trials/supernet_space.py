"""Before a study with ``proxy.kind: supernet`` starts: its sampled space must lie within the
supernet's (:mod:`searchers.differentiable.elastic` says which fields a supernet covers), field
by field, and every enqueued zoo net must be one of its subnets. The first field outside is
refused in one line with the value and the fix; a sampled genotype that still lands outside
(e.g. a width between the trained ones is fine, a frame switch is not) fails its trial with a
:class:`~searchers.differentiable.elastic.SubnetError`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from search_space.choices import CELL_SLOTS
from searchers.common.config import ConfigError
from searchers.differentiable.elastic import SubnetError, check_subnet
from searchers.trials.sampled_space import SampleSpace

__all__ = ["check_space_in_supernet"]

logger = logging.getLogger(__name__)

_INNER_TYPES = ("rfdb", "rlfb", "imdb", "spab")
_WIDE_ATTENTIONS = ("esa", "esa_lite", "cca", "hfab", "esa_mab")


def _fixed(space: SampleSpace) -> list[tuple[str, list[Any], bool]]:
    """``(field, the one value a supernet's frame allows, whether the space uses the field)``."""
    types, atts = set(space.cell_types), set(space.attention_candidates)
    norms = "div2k" in space.input_norms
    return [
        ("fusion_taps", ["all"], True in space.fusion),
        ("fusion_acts", ["lrelu0.05"], True in space.fusion),
        ("erb_slots", [CELL_SLOTS["erb"][0]], "erb" in types),
        ("inners", [None], bool(types & set(_INNER_TYPES))),
        ("attention_channels", [None], bool(atts & set(_WIDE_ATTENTIONS))),
        ("hfab_blocks", [1], "hfab" in atts),
        ("hfab_ops", ["conv3x3"], "hfab" in atts),
        ("hfab_bn", [False], "hfab" in atts),
        ("residuals", ["auto"], True),
        ("group_sizes", [0], space.cells_max >= 2),
        ("long_skip", [True], True),
        ("input_norms", ["none"], True),
        ("output_mean", [False], norms),
        ("head_ops", ["conv3x3"], True),
        ("lr_conv_ops", ["conv3x3"], True),
        ("weight_norm", [False], True),
        ("tails", ["conv3x3"], True),
        ("tail_scales", [False], "dual" in space.tails),
        ("input_skips", ["none"], True),
        ("bias", [True], True),
    ]


def _yaml(value: Any) -> str:
    """A value as it is written in a config (``true``, ``null``, ``conv3x3``)."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_space_in_supernet(space: SampleSpace, run_dir: str, zoo: Sequence[str] = ()) -> None:
    """Refuse a study whose space (or an enqueued zoo net) lies outside the supernet in
    ``run_dir``.

    Raises:
        ConfigError: the first field outside, e.g. ``space.widths has 40 but the supernet in
            runs/supernet/x has at most 32``, with the fix.
    """
    from searchers.sharing.load import read_supernet_space
    from searchers.trials.trial import zoo_genotype

    elastic = read_supernet_space(run_dir)
    spec = elastic.spec
    where = f"the supernet in {run_dir}"

    def refuse(msg: str, fix: str) -> ConfigError:
        return ConfigError(f"{msg}; {fix}")

    if space.scale != spec.scale:
        raise refuse(f"space.scale is {space.scale} but {where} is x{spec.scale}",
                     f"set space.scale={spec.scale}")
    for w in space.widths:
        if w > spec.width:
            raise refuse(f"space.widths has {w} but {where} has at most {spec.width}",
                         f"drop it from space.widths, or train a supernet with space.width={w}")
    if space.cells_max > spec.num_cells:
        raise refuse(f"space.cells_max is {space.cells_max} but {where} has at most "
                     f"{spec.num_cells} cells", f"set space.cells_max={spec.num_cells}, or "
                     f"train a supernet with space.num_cells={space.cells_max}")
    for name, ours, theirs in (("cell_types", space.cell_types, spec.cell_types),
                               ("conv_candidates", space.conv_candidates, spec.conv_candidates),
                               ("attention_candidates", space.attention_candidates,
                                spec.attention_candidates),
                               ("act_candidates", space.act_candidates, spec.act_candidates)):
        for value in ours:
            if value not in theirs:
                raise refuse(f"space.{name} has {value!r} but {where} has only {list(theirs)}",
                             f"drop it from space.{name}, or train a supernet with it")
    for flag in space.fusion:
        if flag != spec.fusion:
            raise refuse(f"space.fusion has {str(flag).lower()} but {where} fixes fusion to "
                         f"{str(spec.fusion).lower()}",
                         f"set space.fusion=[{str(spec.fusion).lower()}]")
    for name, allowed, used in _fixed(space):
        if not used:
            continue
        values = getattr(space, name)
        for value in values:
            if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
                raise refuse(f"space.{name} has {_yaml(value)} but {where} fixes it to "
                             f"{_yaml(allowed[0])} (its frame)",
                             f"set space.{name}=[{_yaml(allowed[0])}]")
    outside = [w for w in space.widths if w not in elastic.widths]
    if outside or space.cells_min < elastic.cells_min:
        logger.warning("space.widths %s / space.cells_min %d: %s trained widths %s and at "
                       "least %d cells; the others are slices it never trained as such",
                       space.widths, space.cells_min, where, list(elastic.widths),
                       elastic.cells_min)
    for name in zoo:
        try:
            check_subnet(spec, zoo_genotype(name, space.scale))
        except SubnetError as exc:
            raise refuse(f"study.zoo: {name!r} is no subnet of {where} ({exc})",
                         "set study.enqueue_zoo=false or drop it from study.zoo") from exc


def space_of_supernet(run_dir: str, base: SampleSpace | None = None) -> SampleSpace:
    """The sampled space that is exactly the supernet's in ``run_dir``: its trained widths,
    ``cells_min`` to ``num_cells`` cells, its cell types, candidates and fusion, every other
    field at the frame the supernet fixes (``base``'s scale must match; the pipeline's
    ``oneshot`` study samples this)."""
    from dataclasses import replace

    from searchers.sharing.load import read_supernet_space

    elastic = read_supernet_space(run_dir)
    spec = elastic.spec
    space = SampleSpace(
        scale=spec.scale, widths=list(elastic.widths),  # type: ignore[arg-type]
        cells_min=elastic.cells_min,
        cells_max=spec.num_cells, cell_types=list(spec.cell_types),
        conv_candidates=list(spec.conv_candidates),
        attention_candidates=list(spec.attention_candidates),
        act_candidates=list(spec.act_candidates), fusion=[spec.fusion])
    if base is not None and base.scale != spec.scale:
        return replace(space, scale=base.scale)  # refused by check_space_in_supernet
    return space
