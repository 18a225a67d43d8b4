"""The profile command: table, JSON and errors (tiny sizes; timings are not asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from proxies.measure.profile_rows import (
    ProfileRow,
    profile_genotypes,
    profile_model,
    with_aim_ratio,
)
from proxies.measure.settings import MeasureSettings
from proxies.profile.command import build_parser, main
from proxies.profile.table import COLUMNS, format_table
from search_space import build_model
from search_space.zoo import ZOO, at_scale

TINY = MeasureSettings(device="cpu", lr_size=(16, 16), rounds=1, runs_per_round=1, warmup=0,
                       memory=False, threads=1)


def test_profile_model_row_without_timing():
    model = build_model(ZOO["rlfn_ntire"])
    row = profile_model("rlfn_ntire", model, MeasureSettings(latency=False, memory=False))
    assert row.params_m == pytest.approx(0.317218)
    assert round(row.ntire_flops_g, 4) == 19.6953 and row.ntire_num_conv == 39
    assert row.latency_ms is None and "rlfn_ntire" in format_table([row])


def test_json_output_has_measured_columns(capsys, tmp_path):
    path = ZOO["fmen_s"].save(tmp_path / "mine.json")
    code = main([str(path), "rlfn_ntire", "--size", "32", "--rounds", "2",
                 "--runs-per-round", "1", "--warmup", "0", "--scale", "2", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in payload["rows"]}
    assert set(rows) == {"mine", "rlfn_ntire"}
    assert payload["reference"] == "span_ntire2024" and payload["aim"] == "rlfn_ntire"
    for row in rows.values():
        assert row["scale"] == 2
        assert row["latency_ms"] > 0 and row["latency_ratio"] > 0
        assert row["peak_memory_mib"] > 0
    # x rlfn_ntire: each ratio to SPAN over rlfn_ntire's, measured in this process
    rlfn = rows["rlfn_ntire"]["latency_ratio"]
    assert rows["rlfn_ntire"]["latency_ratio_aim"] == 1.0
    assert rows["mine"]["latency_ratio_aim"] == pytest.approx(rows["mine"]["latency_ratio"] / rlfn)
    assert payload["machine"]["device"] == "cpu" and payload["settings"]["lr_size"] == [32, 32]


def test_span_is_the_default_reference_and_rlfn_keeps_a_column():
    assert build_parser().parse_args([]).reference == "span_ntire2024"
    titles = [title for title, _ in COLUMNS]
    assert titles.index("x rlfn_ntire") == titles.index("x ref (p10-p90)") + 1
    row = ProfileRow("n", 4, 0.1, 1.0, 0.5, 1.0, 3, latency_ms=2.0, latency_ratio=1.5,
                     latency_ratio_p10=1.4, latency_ratio_p90=1.6)
    (done,) = with_aim_ratio([row], 2.0)  # SPAN is the reference, RLFN's ratio to it is 2
    assert done.latency_ratio_aim == 0.75
    table = format_table([done])
    assert "x rlfn_ntire" in table.splitlines()[0] and " 0.75 " in table
    assert with_aim_ratio([row], None)[0].latency_ratio_aim is None
    with pytest.raises(ValueError, match=r"aim_ratio: got 0\.0"):
        with_aim_ratio([row], 0.0)


def test_the_aim_ratio_is_measured_when_rlfn_is_not_profiled():
    span, rlfn = at_scale(ZOO["span_ntire2024"], 2), at_scale(ZOO["rlfn_ntire"], 2)
    nets = [("fmen", at_scale(ZOO["fmen_s_train"], 2))]
    torch.manual_seed(0)
    (row,) = profile_genotypes(nets, TINY, span, rlfn)  # one extra rlfn-vs-span measurement
    assert row.latency_ratio is not None and row.latency_ratio_aim is not None
    assert row.latency_ratio_aim > 0 and row.latency_ratio_aim != row.latency_ratio
    (same,) = profile_genotypes(nets, TINY, rlfn, rlfn)  # the reference is the aim net
    assert same.latency_ratio_aim == same.latency_ratio
    (none,) = profile_genotypes(nets, TINY, None, rlfn)
    assert none.latency_ratio is None and none.latency_ratio_aim is None


def test_markdown_table(capsys):
    assert main(["fmen_s", "--no-latency", "--no-memory", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Model |") and "| fmen_s | 0.341 | 22.2800 |" in out


def test_bad_names_give_clear_errors(capsys, tmp_path):
    assert main(["rlfn"]) == 2
    assert "expected a zoo name" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"scale": 5, "width": 8, "cells": []}')
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Genotype.scale: got 5" in err and "bad.json" in err
    with pytest.raises(SystemExit) as info:
        main(["--size", "4"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--size: got '4'; expected a size such as 256 or 180x320" in err


def test_thop_column(capsys):
    # Costs are of the deployed form: FMEN-S's training form (RRRB, HFAB with BN; 68.39 G
    # thop MACs as trained) counts as the deployed FMEN-S, 22.28 G, 0.341 M params.
    assert main(["fmen_s_train", "--no-latency", "--no-memory", "--thop"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fmen_s_train"))
    assert "thop MACs [G]" in out and "22.2800" in row and "0.341" in row
    assert "68.3943" not in out


def test_bad_settings_are_refused_before_measuring(capsys):
    """The settings are built (and checked) once, before any net is measured: a bad value or
    backend is one error line and exit status 2."""
    assert main(["fmen_s", "--rounds", "0"]) == 2
    assert "error: rounds must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["fmen_s", "--backend", "tvm"]) == 2
    assert "error: --backend: got 'tvm'; allowed: torch, onnxruntime" in capsys.readouterr().err
