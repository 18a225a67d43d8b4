"""Genotype: a frozen value that validates, round-trips through JSON, and needs no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from search_space import Attention, CellGene, Genotype, GenotypeError
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
    from search_space.genotype import CONV_OPS, check_names

    check_names("conv_candidates", ["conv3x3", "ecb3x3"], CONV_OPS)
    for values, text in (([], "non-empty"), (["conv9x9"], "unknown ['conv9x9']"),
                         (["conv3x3", "conv3x3"], "duplicates")):
        with pytest.raises(GenotypeError, match=re.escape(text)):
            check_names("conv_candidates", values, CONV_OPS)
