"""Genotype: a frozen value that validates, round-trips through JSON, and needs no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from search_space import Attention, CellGene, Genotype, GenotypeError
from search_space.choices import DEFAULT_ATTENTIONS
from search_space.genes import GroupGene
from search_space.patch import min_patch_size
from search_space.zoo import ZOO, at_scale, resolve_genotype


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_roundtrips_through_json(name, tmp_path):
    g = ZOO[name]
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.load(g.save(tmp_path / f"{name}.json")) == g
    assert hash(g) == hash(Genotype.from_dict(json.loads(g.to_json())))


def test_importable_without_torch():
    code = (
        "import sys; from search_space import Genotype; from search_space.zoo import ZOO; "
        "Genotype.from_json(ZOO['rlfn_ntire'].to_json()); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_frozen():
    with pytest.raises(AttributeError):
        ZOO["rlfn_ntire"].width = 3  # type: ignore[misc]


def test_deployed_form_of_fmen_train_is_fmen_s():
    assert ZOO["fmen_s_train"].deployed() == ZOO["fmen_s"]
    assert ZOO["fmen_s"].is_deployed and not ZOO["fmen_s_train"].is_deployed


def test_at_scale_changes_only_scale():
    g = at_scale(ZOO["rfdn_aim2020"], 2)
    assert g.scale == 2 and replace(g, scale=4) == ZOO["rfdn_aim2020"]


def _cell(**kw):
    base = dict(type="rlfb", ops=("conv3x3",) * 3)
    base.update(kw)
    return CellGene(**base)


@pytest.mark.parametrize(
    "kwargs, field, bad",
    [
        (dict(scale=5), "Genotype.scale", "5"),
        (dict(width=0), "Genotype.width", "0"),
        (dict(data_range=100.0), "Genotype.data_range", "100.0"),
        (dict(fusion_act="tanh"), "Genotype.fusion_act", "'tanh'"),
        (dict(cells=()), "Genotype.cells", "()"),
        (dict(cells=(_cell(ops=("conv9x9",) * 3),)), "Genotype.cells[0].ops[0]", "'conv9x9'"),
        (dict(cells=(_cell(ops=("conv3x3",) * 2),)), "Genotype.cells[0].ops", "conv3x3"),
        (dict(cells=(_cell(type="rrdb"),)), "Genotype.cells[0].type", "'rrdb'"),
        (dict(cells=(_cell(act="mish"),)), "Genotype.cells[0].act", "'mish'"),
        (dict(cells=(_cell(attention=Attention("se")),)), "cells[0].attention.type", "'se'"),
        (dict(cells=(_cell(shallow_residual=True),)), "cells[0].shallow_residual", "True"),
        (dict(cells=(_cell(inner=-3),)), "Genotype.cells[0].inner", "-3"),
        (dict(cells=(CellGene("erb", ("conv3x3",) * 2, inner=8),)), "cells[0].inner", "8"),
        (dict(cells=(CellGene("imdb", ("conv3x3",) * 4, inner=16),)), "cells[0].inner", "16"),
        (dict(cells=(_cell(attention=Attention("esa", bn=True)),)), "attention", "hfab"),
        (dict(cells=(_cell(attention=Attention("pa", channels=4)),)), "channels", "4"),
        (dict(fusion_taps=("head",)), "Genotype.fusion_taps", "['head']"),
        (dict(fusion=True, fusion_taps=("cells.1",)), "fusion_taps[0]", "'cells.1'"),
        (dict(fusion=True, fusion_taps=("cells.00",)), "fusion_taps[0]", "'cells.00'"),
        (dict(fusion=True, fusion_taps=("cells.0.act0",)), "fusion_taps[0]", "'rlfb'"),
        (dict(fusion=True, fusion_taps=("lr_conv",)), "fusion_taps[0]", "'lr_conv'"),
        (dict(fusion=True, fusion_taps=("head", "head")), "fusion_taps", "each tap once"),
        (dict(fusion=True, lr_conv_before_fusion=True), "lr_conv_before_fusion", "True"),
        (dict(fusion=True, fusion_act="none", long_skip=1), "Genotype.long_skip", "1"),
        (dict(input_mean=(0.5, 0.5)), "Genotype.input_mean", "(0.5, 0.5)"),
        (dict(input_mean=(0.5, 0.5, 128.0)), "Genotype.input_mean", "128.0"),
        (dict(input_scale=10.0), "Genotype.input_scale", "10.0"),
        (dict(head_op="sep_conv3x3"), "Genotype.head_op", "'sep_conv3x3'"),
        (dict(bias=False, cells=(_cell(ops=("conv3x3", "ecb3x3", "conv3x3")),)),
         "Genotype.cells[0].ops[1]", "'ecb3x3'"),
        (dict(bias=False, lr_conv_op="rep_conv3x3"), "Genotype.lr_conv_op", "'rep_conv3x3'"),
        (dict(cells=(CellGene("spab", ("conv3x3",) * 2),)), "Genotype.cells[0].ops", "spab"),
        (dict(cells=(CellGene("spab", ("conv3x3",) * 3, shallow_residual=True),)),
         "cells[0].shallow_residual", "True"),
        # MAFFSRN's pieces: attention sequences, groups, tail, input skip, weight norm.
        (dict(cells=(_cell(attention=(Attention("esa_mab"), Attention("none"))),)),
         "cells[0].attention[1].type", "'none'"),
        (dict(cells=(_cell(attention=(Attention("cea"),) * 4),)), "cells[0].attention", "2 to 3"),
        (dict(cells=(_cell(attention=(Attention("cea"), 7)),)), "cells[0].attention[1]", "7"),
        (dict(cells=(_cell(attention=Attention("cea", channels=4)),)), "channels", "4"),
        (dict(cells=(CellGene("mab", ("conv3x3",) * 2, inner=8),)), "cells[0].inner", "8"),
        (dict(cells=(CellGene("mab", ("conv3x3",) * 3),)), "cells[0].ops", "mab"),
        (dict(cells=(_cell(),) * 3, groups=(GroupGene(2),)), "Genotype.groups", "[2]"),
        (dict(cells=(_cell(),) * 2, groups=(GroupGene(2, type="rg"),)), "groups[0].type",
         "'rg'"),
        (dict(cells=(_cell(),), groups=(GroupGene(1),)), "Genotype.groups[0].size", "1"),
        (dict(cells=(_cell(),) * 2, groups=(GroupGene(2),), fusion=True), "Genotype.fusion",
         "True"),
        (dict(tail="triple"), "Genotype.tail", "'triple'"),
        (dict(tail_scales=True), "Genotype.tail_scales", "True"),
        (dict(input_skip="bilinear"), "Genotype.input_skip", "'bilinear'"),
        (dict(weight_norm=True, head_op="conv3xc"), "Genotype.head_op", "'conv3xc'"),
        (dict(weight_norm="yes"), "Genotype.weight_norm", "'yes'"),
        (dict(lr_conv_op="conv5x5"), "Genotype.lr_conv_op", "'conv5x5'"),
        (dict(fusion=True, fusion_taps=("lr_conv",), lr_conv_before_fusion=True,
              lr_conv_op="none"), "Genotype.lr_conv_op", "'none'"),
    ],
)
def test_bad_genotypes_name_field_value_and_allowed(kwargs, field, bad):
    base = dict(scale=4, width=16, cells=(_cell(),))
    base.update(kwargs)
    with pytest.raises(GenotypeError) as info:
        Genotype(**base)
    msg = str(info.value)
    assert field in msg and bad in msg and "allowed" in msg


def test_unknown_op_lists_valid_names():
    with pytest.raises(GenotypeError, match="conv3x3, conv5x5"):
        Genotype(scale=2, width=8, cells=(_cell(ops=("conv2x2",) * 3),))


def test_from_dict_rejects_unknown_keys_and_missing_fields():
    d = ZOO["rlfn_ntire"].to_dict()
    with pytest.raises(GenotypeError, match="depth"):
        Genotype.from_dict({**d, "depth": 3})
    d2 = dict(d)
    del d2["width"]
    with pytest.raises(GenotypeError, match="Missing: width"):
        Genotype.from_dict(d2)
    d3 = json.loads(json.dumps(d))
    d3["cells"][1]["kernel"] = 3
    with pytest.raises(GenotypeError, match=r"cells\[1\].*kernel"):
        Genotype.from_dict(d3)
    with pytest.raises(GenotypeError, match="does not parse"):
        Genotype.from_json("{not json")


def test_lists_are_accepted_and_frozen_to_tuples():
    g = Genotype(scale=2, width=8, cells=[CellGene("erb", ["conv3x3", "sep_conv3x3"], "pa")])
    assert isinstance(g.cells, tuple) and isinstance(g.cells[0].ops, tuple)
    assert g.cells[0].attention == Attention("pa")


def test_resolve_genotype(tmp_path):
    assert resolve_genotype("fmen_s") == ("fmen_s", ZOO["fmen_s"])
    path = ZOO["imdn_ntire"].save(tmp_path / "mine.json")
    assert resolve_genotype(str(path)) == ("mine", ZOO["imdn_ntire"])
    with pytest.raises(GenotypeError, match="rlfn_ntire"):
        resolve_genotype("rlfn")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        resolve_genotype(str(tmp_path / "nope.json"))


def test_check_names_for_candidate_lists():
    from search_space.checks import check_names
    from search_space.choices import CONV_OPS

    check_names("conv_candidates", ["conv3x3", "ecb3x3"], CONV_OPS)
    for values, text in (([], "non-empty"), (["conv9x9"], "unknown ['conv9x9']"),
                         (["conv3x3", "conv3x3"], "duplicates")):
        with pytest.raises(GenotypeError, match=re.escape(text)):
            check_names("conv_candidates", values, CONV_OPS)


OLD_RLFN_JSON = """{"version": 1, "scale": 4, "width": 46, "data_range": 255.0, "fusion": false,
 "fusion_act": "lrelu0.05", "cells": [{"type": "rlfb", "ops": ["conv3x3", "conv3x3", "conv3x3"],
 "attention": {"type": "esa_lite", "channels": 16}, "act": "lrelu0.05", "inner": 48,
 "shallow_residual": false, "block_residual": true}]}"""


def test_genotype_json_written_before_the_network_switches_still_loads():
    g = Genotype.from_json(OLD_RLFN_JSON)
    assert g == replace(ZOO["rlfn_ntire"], cells=ZOO["rlfn_ntire"].cells[:1])
    assert (g.long_skip, g.bias, g.fusion_taps, g.input_mean, g.input_scale) == (
        True, True, None, None, 1.0)
    # At their defaults the switches stay out of the JSON: earlier files are unchanged.
    assert json.loads(g.to_json()) == json.loads(OLD_RLFN_JSON)
    for name in ("imdn_ntire", "rfdn_aim2020", "rlfn_ntire", "fmen_s", "fmen_s_train"):
        assert set(ZOO[name].to_dict()) == {"version", "scale", "width", "data_range", "fusion",
                                            "fusion_act", "cells"}


def test_span_switches_round_trip_and_deploy():
    g = ZOO["span_ntire2024_train"]
    d = json.loads(g.to_json())
    assert d["fusion_taps"] == ["head", "lr_conv", "cells.0", "cells.5.act0"]
    assert d["input_mean"] == [0.4488, 0.4371, 0.404] and d["input_scale"] == 255.0
    assert (d["long_skip"], d["lr_conv_before_fusion"], d["head_op"]) == (False, True, "conv3xc")
    assert g.deployed() == ZOO["span_ntire2024"] and ZOO["span_ntire2024"].is_deployed
    assert not g.is_deployed
    assert g.fusion_inputs == g.fusion_taps and ZOO["rfdn_aim2020"].fusion_inputs == tuple(
        f"cells.{i}" for i in range(4))
    mid = replace(g.cells[0], inner=12)
    narrow = replace(g, cells=(mid,) * 6)
    assert narrow.tap_channels("cells.5.act0") == 12 and narrow.tap_channels("head") == 28


def test_maffsrn_switches_round_trip_and_deploy():
    g = ZOO["maffsrn"]
    d = json.loads(g.to_json())
    assert d["groups"] == [{"size": 4, "type": "ffg", "shuffle": True, "res_scale": True,
                            "skip_scale": True}] * 4
    assert (d["weight_norm"], d["tail"], d["tail_scales"], d["input_skip"]) == (
        True, "dual", True, "bicubic")
    assert (d["lr_conv_op"], d["long_skip"]) == ("none", False)
    # A cell's attention sequence is a list in JSON; a single attention stays a mapping.
    assert d["cells"][0]["attention"] == [{"type": "esa_mab", "channels": 8},
                                          {"type": "cea", "channels": None}]
    assert ZOO["rlfn_ntire"].to_dict()["cells"][0]["attention"] == {"type": "esa_lite",
                                                                    "channels": 16}
    assert g.attentions == ("esa_mab", "cea") and g.cells[0].attentions == (
        Attention("esa_mab", channels=8), Attention("cea"))
    dep = g.deployed()
    assert dep.is_deployed and not g.is_deployed
    assert (dep.weight_norm, dep.tail_scales) == (False, False)
    assert all((grp.shuffle, grp.res_scale, grp.skip_scale) == (False, False, True)
               for grp in dep.groups or ())
    assert Genotype.from_json(dep.to_json()) == dep
    # Hand-written JSON: a group may be a plain size, an attention list of one is that one.
    short = dict(d, groups=[4, 4, 4, 4])
    assert Genotype.from_dict(short) == g
    one = dict(d["cells"][0], attention=[{"type": "cea"}])
    assert CellGene.from_dict(one).attention == Attention("cea")
    assert ZOO["maffsrn_l"].groups == (GroupGene(4),) * 8
    with pytest.raises(GenotypeError, match=r"groups\[0\].*'shufle'.*allowed"):
        Genotype.from_dict(dict(d, groups=[{"size": 4, "shufle": True}] * 4))
    with pytest.raises(GenotypeError, match=r"groups\[1\]: got 'four'.*allowed"):
        Genotype.from_dict(dict(d, groups=[4, "four", 4, 4]))
    with pytest.raises(GenotypeError, match=r"cells\[0\].attention\[1\].*'typ'"):
        Genotype.from_dict(dict(d, cells=[dict(d["cells"][0], attention=[
            {"type": "cea"}, {"typ": "cea"}])] + d["cells"][1:]))


def test_attention_sequences_are_refused_where_a_single_slot_is_needed():
    cell = ZOO["maffsrn"].cells[0]
    with pytest.raises(GenotypeError, match=r"cells\[3\].attention.*esa_mab.*single"):
        cell.single_attention("cells[3]")
    assert _cell(attention=Attention("pa")).single_attention() == Attention("pa")


def test_esa_mab_patch_minimum_and_default_candidates():
    # The stride-2 conv is padded by 1: ceil(n / 2) px, pooled 7/3 -> 3x3 from 25 px on.
    def pooled(n: int) -> int:
        return ((n + 1) // 2 - 7) // 3 + 1

    assert pooled(25) == 3 and pooled(24) == 2
    assert min_patch_size(["esa_mab", "cea"], 4) == 100 and min_patch_size(["cea"], 4) == 4
    assert "esa_mab" not in DEFAULT_ATTENTIONS and "cea" not in DEFAULT_ATTENTIONS
