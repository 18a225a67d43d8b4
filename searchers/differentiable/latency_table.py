"""Hardware lookup table: measured latency, peak memory and parameters of every candidate.

Every candidate of every mixed slot, every cell type's fixed part and the net's fixed rest
(head, fusion, LR conv, upsampler) is built from the op table and measured once on the current
device with the proxies (:func:`proxies.measure.latency.measure_latency`,
:func:`proxies.measure.memory.measure_peak_memory`), at the slot's channel shape and the table's LR
size. Entries are cached on disk in a JSON file whose name carries the device, dtype and
thread count; each entry's key carries the shape. A second search on the same machine measures
nothing.

:func:`validate_table` checks the table against measured whole-net latency over random derived
nets (Spearman rank correlation and mean absolute percentage error); run it as
``python -m searchers.tools.benchmark lut`` (this module has no command of its own).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from proxies.measure.complexity import count_params
from proxies.measure.latency import measure_latency
from proxies.measure.memory import measure_peak_memory_or_torch
from proxies.measure.profile_rows import cpu_name
from proxies.measure.settings import MeasureSettings, resolve_device
from proxies.measure.stats import kendall, spearman  # noqa: F401  (re-exported)
from search_space.attention import ATTENTION_OPS
from search_space.cells import CELLS
from search_space.choices import REPARAM_OPS
from search_space.files import atomic_write_text
from search_space.genes import Attention
from search_space.genotype import Genotype
from search_space.network import SRNet, deployed_form
from search_space.ops import ACTIVATION_OPS, OPS
from searchers.differentiable.supernet import (
    MixedCell,
    MixedOp,
    SkeletonBuilder,
    SlotCost,
    SuperNet,
    SupernetSpec,
)

logger = logging.getLogger(__name__)

TABLE_VERSION = 2
"""2: entries are costs of the deployed form (re-parameterisable ops as the 3x3 they merge
into); version 1 tables held training-form costs and are ignored."""


@dataclass(frozen=True)
class Entry:
    latency_ms: float
    memory_mib: float
    params: int


def device_tag(device: torch.device) -> str:
    """A file-name-safe name of the device (GPU model or CPU model)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{device.type}-{name}").strip("-").lower()


class HardwareTable:
    """Entries keyed by what was measured, cached in ``cache_dir``.

    Args:
        settings: how to measure (one round of ``runs_per_round`` runs per entry: its
            :attr:`~proxies.measure.settings.MeasureSettings.runs`); all of it is part of the
            cache identity.
        cache_dir: where the JSON cache lives (``None``: no cache).
    """

    def __init__(self, settings: MeasureSettings, cache_dir: str | Path | None = None) -> None:
        self.settings = settings  # validated when built (MeasureSettings.__post_init__)
        self.device = resolve_device(settings.device)
        self.threads = settings.threads or torch.get_num_threads()
        self.path: Path | None = None
        self.entries: dict[str, Entry] = {}
        if cache_dir is not None:
            name = (f"lut_{device_tag(self.device)}_{settings.dtype}_t{self.threads}_"
                    f"r{settings.runs}"
                    f"{'' if settings.backend == 'torch' else '_' + settings.backend}.json")
            self.path = Path(cache_dir) / name
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            logger.warning("ignoring the unreadable hardware table %s (%s)", self.path, exc)
            return
        if data.get("version") != TABLE_VERSION:
            return
        self.entries = {k: Entry(**v) for k, v in data.get("entries", {}).items()}
        logger.info("hardware table: %d cached entries from %s", len(self.entries), self.path)

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": TABLE_VERSION,
            "settings": asdict(self.settings),
            "device": str(self.device),
            "torch": torch.__version__,
            "threads": self.threads,
            "entries": {k: asdict(v) for k, v in sorted(self.entries.items())},
        }
        atomic_write_text(self.path, json.dumps(payload, indent=1))

    def key(self, cost: SlotCost, detail: str = "") -> str:
        """The entry of a slot candidate. A re-parameterisable op shares the entry of the op it
        deploys as (``rep_conv3x3``, ``ecb3x3`` and ``conv3xc`` cost exactly what ``conv3x3``
        costs)."""
        h, w = self.settings.lr_size
        name = REPARAM_OPS.get(cost.name, cost.name) if cost.kind == "conv" else cost.name
        return f"{cost.kind}:{name}:{cost.c_in}x{cost.c_out}@{h}x{w}{detail}"

    def measure(self, key: str, module: nn.Module, channels: int) -> Entry:
        """The entry for ``key``, measuring ``module`` on a ``channels``-channel input if new."""
        if key in self.entries:
            return self.entries[key]
        module = deployed_form(module.eval()).to(self.device, self.settings.torch_dtype).eval()
        lat = measure_latency(module, self.settings, channels=channels)
        mem = measure_peak_memory_or_torch(module, self.settings, channels=channels)
        entry = Entry(lat.median_ms, mem.peak_memory_mib, count_params(module))
        self.entries[key] = entry
        self._save()
        return entry


def cost_module(cost: SlotCost, spec: SupernetSpec) -> nn.Module:
    """The module whose cost a table entry records (built from the same op tables), in its
    deployed form: a re-parameterisable op is measured as the conv it merges into."""
    if cost.kind == "conv":
        return deployed_form(OPS[cost.name](cost.c_in, cost.c_out))
    if cost.kind == "attention":
        return ATTENTION_OPS[cost.name](cost.c_in, Attention(cost.name), spec.act_candidates[0])
    if cost.kind == "act":
        return ACTIVATION_OPS[cost.name](cost.c_in)
    if cost.kind == "cell":
        builder = SkeletonBuilder(free_acts=len(spec.act_candidates) > 1)
        return CELLS[cost.name](spec.template_gene(cost.name), cost.c_in, builder, "")
    raise ValueError(f"cost.kind: got {cost.kind!r}; expected conv, attention, act or cell")


def _detail(cost: SlotCost, spec: SupernetSpec) -> str:
    if cost.kind == "attention":
        return f":{spec.act_candidates[0]}"
    if cost.kind == "cell":
        gene = json.dumps([spec.template_gene(cost.name).to_dict(), len(spec.act_candidates) > 1],
                          sort_keys=True)
        return ":" + hashlib.sha1(gene.encode()).hexdigest()[:10]
    return ""


class _Rest(nn.Module):
    """The net without its cells: head, fusion, LR conv with the long skip, upsampler."""

    def __init__(self, genotype: Genotype) -> None:
        super().__init__()
        net = SRNet(genotype)
        net.cells = nn.ModuleList(nn.Identity() for _ in genotype.cells)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _rest_key(table: HardwareTable, genotype: Genotype) -> str:
    h, w = table.settings.lr_size
    switches = genotype.to_dict()
    frame = {k: switches[k] for k in ("fusion_taps", "lr_conv_before_fusion", "long_skip",
                                      "input_mean", "bias") if k in switches}
    # Only non-default switches extend the key (earlier entries stay valid); the head and
    # LR conv ops and the input scale are costed as their deployed conv3x3 (the same entry).
    extra = ":" + hashlib.sha1(json.dumps(frame, sort_keys=True).encode()).hexdigest()[:10] \
        if frame else ""
    return (f"rest:x{genotype.scale}:w{genotype.width}:n{genotype.num_cells}:"
            f"f{int(genotype.fusion)}:{genotype.fusion_act}{extra}@{h}x{w}")


def measure_whole_net(table: HardwareTable, name: str, genotype: Genotype) -> Entry:
    """The entry of a whole net (a zoo net a budget is relative to), measured in its deployed
    form at the table's settings and cached with the table: two searches that share a cached
    table get the same figures, hence the same budget (a search killed and re-run in another
    folder derives what the uninterrupted one did). The key carries the net's name and a digest
    of its genotype, so a changed zoo entry is measured anew."""
    h, w = table.settings.lr_size
    digest = hashlib.sha1(genotype.to_json(indent=None).encode()).hexdigest()[:10]
    key = f"net:{name}:x{genotype.scale}:{digest}@{h}x{w}"
    if key in table.entries:
        return table.entries[key]
    from search_space import build_model

    torch.manual_seed(0)
    return table.measure(key, build_model(genotype), channels=3)


def fill_supernet_costs(net: SuperNet, table: HardwareTable, progress: bool = False) -> int:
    """Measure what is missing and copy every entry into the supernet's cost buffers (with
    an elastic width, also each narrower width's twin: :meth:`SuperNet.cost_net`).

    Returns the number of entries that had to be measured.
    """
    nets = [net.cost_net(w) for w in net.spec.widths[:-1]] + [net]
    return sum(_fill_costs(n, table, progress) for n in nets)


def _fill_costs(net: SuperNet, table: HardwareTable, progress: bool) -> int:
    """:func:`fill_supernet_costs` at ``net``'s own width (the width gate costs nothing)."""
    spec = net.spec
    ops = [op for op in net.mixed_ops() if op.costs[0].kind != "width"]
    todo: list[tuple[str, SlotCost]] = []
    for op in ops:
        for cost in op.costs:
            todo.append((table.key(cost, _detail(cost, spec)), cost))
    template = spec.template_genotype()
    missing = {k for k, _ in todo if k not in table.entries}
    missing |= {_rest_key(table, template)} - set(table.entries)
    iterator: Iterable[tuple[str, SlotCost]] = todo
    if progress and missing:
        from tqdm import tqdm

        logger.info("measuring %d hardware-table entries on %s (width %d)", len(missing),
                    table.device, spec.width)
        iterator = tqdm(todo, desc=f"hardware table, width {spec.width}", unit="entry")
    for key, cost in iterator:
        table.measure(key, cost_module(cost, spec), cost.c_in)
    rest = table.measure(_rest_key(table, template), _Rest(template), 3)
    device = net.device
    for op in ops:
        entries = [table.entries[table.key(c, _detail(c, spec))] for c in op.costs]
        op.latency_ms.copy_(torch.tensor([e.latency_ms for e in entries], device=device))
        op.memory_mib.copy_(torch.tensor([e.memory_mib for e in entries], device=device))
        op.params.copy_(torch.tensor([float(e.params) for e in entries], device=device))
    net.base_cost = (rest.latency_ms, rest.memory_mib, float(rest.params))
    return len(missing)


def predict_genotype(net: SuperNet, genotype: Genotype) -> dict[str, float]:
    """Table-predicted latency (ms), peak memory (MiB) and params of a derived genotype (at
    its width's costs)."""
    src = net.cost_net(genotype.width)
    lat, mem, par = src.base_cost
    mems = [mem]
    for i, (cell, gene) in enumerate(zip(src.cells, genotype.cells, strict=True)):
        assert isinstance(cell, MixedCell)
        j = cell.mixed.candidates.index(gene.type)
        lat += float(cell.mixed.latency_ms[j])
        par += float(cell.mixed.params[j])
        mems.append(float(cell.mixed.memory_mib[j]))
        prefix = src.spec.slot_prefix(i, gene.type)
        choice = {f"{prefix}conv{k}": op for k, op in enumerate(gene.ops)}
        choice[f"{prefix}attention"] = gene.single_attention(f"cells[{i}]").type
        choice[f"{prefix}act"] = gene.act
        for m in cell.mixed.ops[j].modules():
            if isinstance(m, MixedOp) and m.slot in choice:
                k = m.candidates.index(choice[m.slot])
                lat += float(m.latency_ms[k])
                par += float(m.params[k])
                mems.append(float(m.memory_mib[k]))
    return {"latency_ms": lat, "memory_mib": max(mems), "params": par}


def random_genotypes(net: SuperNet, n: int, seed: int = 0) -> list[Genotype]:
    """``n`` distinct genotypes drawn uniformly from the supernet's space (capped tries)."""
    gen = torch.Generator().manual_seed(seed)
    slots = {op.slot: op.candidates for op in net.mixed_ops()}
    out: list[Genotype] = []
    for _ in range(50 * n):
        choice = {s: c[int(torch.randint(len(c), (1,), generator=gen))] for s, c in slots.items()}
        g = net.derive(choice)
        if g not in out:
            out.append(g)
        if len(out) == n:
            break
    return out


def validate_table(net: SuperNet, table: HardwareTable, samples: int = 30,
                   seed: int = 0) -> dict[str, Any]:
    """Table-predicted vs measured latency over ``samples`` random derived nets."""
    from tqdm import tqdm

    from search_space.network import build_model

    rows = []
    for g in tqdm(random_genotypes(net, samples, seed), desc="validating table", unit="net"):
        model = build_model(g).eval()
        measured = measure_latency(model, table.settings)
        pred = predict_genotype(net, g)
        rows.append((pred["latency_ms"], measured.median_ms))
    pred_ms = [p for p, _ in rows]
    meas_ms = [m for _, m in rows]
    mape = sum(abs(p - m) / m for p, m in rows) / len(rows) * 100
    return {"samples": len(rows), "spearman": spearman(pred_ms, meas_ms), "mape_percent": mape,
            "predicted_ms": pred_ms, "measured_ms": meas_ms}
