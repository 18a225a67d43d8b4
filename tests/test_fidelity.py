"""A recipe's fidelity (results.report.fidelity): the zoo ranked as the converged nets are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from results.report.fidelity import (
    from_report,
    main,
    read_converged,
    recipe_fidelity,
    zoo_name,
)

CONVERGED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "converged_psnr.md"


@pytest.fixture
def converged():
    if not CONVERGED.exists():
        pytest.skip(f"{CONVERGED} is not here (the shared material beside the repo)")
    return read_converged(CONVERGED)


def test_the_converged_table_is_read_whole(converged):
    assert converged["imdn_ntire"] == {"Set5": 32.255, "Set14": 28.707, "B100": 27.636}
    assert {"span_ntire2024", "rlfn_ntire", "fmen_s"} <= set(converged)


def test_the_same_ranking_scores_one_and_the_reverse_minus_one(converged):
    same = {n: {s: v - 3.0 for s, v in sets.items()} for n, sets in converged.items()}
    r = recipe_fidelity(same, converged)
    assert r["mean"]["spearman"] == pytest.approx(1.0) and r["verdicts_hold"]
    flipped = {n: {s: -v for s, v in sets.items()} for n, sets in converged.items()}
    r = recipe_fidelity(flipped, converged)
    assert r["mean"]["spearman"] < -0.9 and not r["verdicts_hold"]
    assert set(r["per_set"]) == {"Set5", "Set14", "B100"}


def test_a_report_seed_table_is_matched_to_zoo_names(tmp_path, converged):
    assert zoo_name("fmen_s_train_s2", converged) == "fmen_s"
    assert zoo_name("darts_s0", converged) is None
    rows = [{"name": n, "psnr_y_Set5": v["Set5"] - 2, "psnr_y_Set14": None}
            for n, v in converged.items()]
    rows[0]["name"] += "_train"
    rows.append({"name": "darts", "psnr_y_Set5": 99.0})
    (tmp_path / "report.json").write_text(json.dumps({"seeds": rows}))
    ours = from_report(tmp_path, converged)
    assert set(ours) == set(converged) and all(set(v) == {"Set5"} for v in ours.values())
    assert recipe_fidelity(ours, converged)["sets"] == ["Set5"]
    assert main([str(tmp_path), "--converged", str(CONVERGED)]) == 0


def test_too_few_nets_or_no_report_is_refused(tmp_path, converged, capsys):
    with pytest.raises(ValueError, match="at least 3 zoo nets"):
        recipe_fidelity({"rlfn_ntire": {"Set5": 29.0}}, converged)
    assert main([str(tmp_path), "--converged", str(CONVERGED)]) == 2
    assert "no report.json" in capsys.readouterr().err
