"""The profile command: table, JSON and errors (tiny sizes; timings are not asserted)."""

from __future__ import annotations

import json

import pytest

from proxies.profile import ProfileSettings, format_table, main, profile_model
from search_space import build_model
from search_space.zoo import ZOO


def test_profile_model_row_without_timing():
    model = build_model(ZOO["rlfn_ntire"])
    row = profile_model("rlfn_ntire", model, ProfileSettings(latency=False, memory=False))
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
    assert set(rows) == {"mine", "rlfn_ntire"} and payload["reference"] == "rlfn_ntire"
    for row in rows.values():
        assert row["scale"] == 2
        assert row["latency_ms"] > 0 and row["latency_ratio"] > 0
        assert row["peak_memory_mib"] > 0
    assert payload["machine"]["device"] == "cpu" and payload["settings"]["lr_size"] == [32, 32]


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
    with pytest.raises(SystemExit):
        main(["--size", "4"])


def test_thop_column(capsys):
    # Costs are of the deployed form: FMEN-S's training form (RRRB, HFAB with BN; 68.39 G
    # thop MACs as trained) counts as the deployed FMEN-S, 22.28 G, 0.341 M params.
    assert main(["fmen_s_train", "--no-latency", "--no-memory", "--thop"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fmen_s_train"))
    assert "thop MACs [G]" in out and "22.2800" in row and "0.341" in row
    assert "68.3943" not in out
