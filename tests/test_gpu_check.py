"""The GPU check script: its dry run on the CPU, skips, failures and caps (no GPU needed)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from searchers.tools.gpu_check import runner
from searchers.tools.gpu_check.command import main
from searchers.tools.gpu_check.context import Item, Skipped, parse_markdown_table
from searchers.tools.gpu_check.runner import ITEMS, run_check

STATUSES = {"ok", "skipped", "failed", "timeout"}


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    code = main(["--out", str(out), "--dry-run"])
    payload = json.loads((out / "gpu_check.json").read_text())
    return code, payload, (out / "gpu_check.md").read_text()


def test_dry_run_records_every_item_with_a_status(dry):
    code, payload, md = dry
    items = {r["name"]: r for r in payload["items"]}
    assert list(items) == [i.name for i in ITEMS]
    assert payload["dry_run"] is True and payload["device"] == "cpu"
    for name, r in items.items():
        assert r["status"] in STATUSES, name
        assert f"| {name} | {r['status']} |" in md
        assert f"## {name}: " in md
        if r["status"] != "ok":
            assert r["reason"], name  # a skip or failure always says why
    # what runs on a CPU runs in the dry run, really
    for name in ("zoo_fp32", "lut_fidelity", "darts_step", "amp_retrain"):
        assert items[name]["status"] == "ok", (name, items[name]["reason"])
    assert code == 0


def test_dry_run_items_hold_their_figures(dry):
    _, payload, md = dry
    items = {r["name"]: r for r in payload["items"]}
    zoo = items["zoo_fp32"]["data"]
    assert zoo["protocol"] == "ntire2024" and "HR images" in zoo["images"]
    assert zoo["ntire"][0]["images"] == 3 and zoo["steady"][0]["latency_ratio"] > 0
    assert {r["mode"] for r in items["darts_step"]["data"]["rows"]} == {"full", "sample"}
    assert all(r["peak step memory [MiB]"] >= 0 for r in items["darts_step"]["data"]["rows"])
    lut = items["lut_fidelity"]["data"]
    assert lut["samples"] == 3 and len(lut["measured_ms"]) == 3 and lut["entries"] > 0
    amp = items["amp_retrain"]["data"]
    assert amp["iterations"] == 2 and amp["amp"] is False  # AMP is CUDA only
    assert "trained in float32" in items["amp_retrain"]["markdown"]
    ort = items["onnxruntime_cuda"]
    if ort["status"] == "skipped":
        assert "onnxruntime" in ort["reason"]
    assert "NTIRE mean [ms]" in md and "Spearman" in md


def test_without_cuda_every_item_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    payload = run_check(tmp_path, dry_run=False)
    assert [r["status"] for r in payload["items"]] == ["skipped"] * len(ITEMS)
    assert all("no CUDA device" in r["reason"] and "is_available() is False" in r["reason"]
               for r in payload["items"])
    assert payload["device"] is None
    assert "| zoo_fp32 | skipped |" in (tmp_path / "gpu_check.md").read_text()


def test_failures_and_timeouts_are_recorded_and_fail_the_exit_code(tmp_path, monkeypatch):
    def boom(ctx):
        raise ValueError("broken on purpose")

    def slow(ctx):
        time.sleep(3)
        return {}, ""

    def missing(ctx):
        raise Skipped("needs a thing")

    items = (Item("a", "fails", 5, boom), Item("b", "sleeps", 0.2, slow),
             Item("c", "skips", 5, missing))
    monkeypatch.setattr(runner, "ITEMS", items)
    t0 = time.perf_counter()
    assert main(["--out", str(tmp_path), "--dry-run"]) == 1
    assert time.perf_counter() - t0 < 2.5  # the cap stopped the sleeper
    got = {r["name"]: r for r in json.loads((tmp_path / "gpu_check.json").read_text())["items"]}
    assert got["a"]["status"] == "failed" and "broken on purpose" in got["a"]["reason"]
    assert "Traceback" in got["a"]["data"]["traceback"]
    assert got["b"]["status"] == "timeout" and "cap of 0.2 s" in got["b"]["reason"]
    assert got["c"] == got["c"] | {"status": "skipped", "reason": "needs a thing"}


def test_only_and_unknown_items(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--dry-run", "--only", "nope"]) == 2
    assert "--only: unknown item(s) nope" in capsys.readouterr().err


def test_parse_markdown_table():
    text = "head\n\n| mode | a [ms] | b |\n|---|---|---|\n| full | 1.5 | - |\n"
    rows = parse_markdown_table(text)
    assert rows == [{"mode": "full", "a [ms]": 1.5, "b": None}]


def test_the_module_runs_as_a_command(tmp_path):
    """``python -m searchers.tools.gpu_check`` is the package's ``__main__``: bad input is one
    error line and exit status 2."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "searchers.tools.gpu_check", "--out",
                           str(tmp_path), "--dry-run", "--only", "nope"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--only: unknown item(s) nope" in done.stderr and "Traceback" not in done.stderr
