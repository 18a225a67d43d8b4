"""The optional NNI peer: the same space as an NNI ModelSpace (skipped where NNI is absent)."""

from __future__ import annotations

import pytest

from searchers.differentiable.supernet import SupernetSpec

SPEC = SupernetSpec(scale=2, width=8, num_cells=2, cell_types=("rfdb", "erb"),
                    conv_candidates=("conv3x3", "sep_conv3x3"),
                    attention_candidates=("none", "pa"))


def test_missing_nni_gives_the_install_hint(monkeypatch):
    import builtins

    from searchers.tools import nni_peer

    real_import = builtins.__import__

    def no_nni(name, *args, **kwargs):
        if name == "nni" or name.startswith("nni."):
            raise ImportError("No module named 'nni'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nni)
    with pytest.raises(ImportError, match=r"separate virtualenv.*\[nni\]"):
        nni_peer.require_nni()
    assert nni_peer.main(["search.steps=1"]) == 2


def test_choice_maps_back_to_a_genotype():
    from searchers.tools.nni_peer import choice_to_genotype

    choice = {"cells.0.type": "erb", "cells.0.erb.conv0": "sep_conv3x3",
              "cells.0.erb.conv1": "conv3x3", "cells.0.erb.attention": "pa",
              "cells.1.type": "rfdb", "cells.1.rfdb.conv2": "sep_conv3x3"}
    g = choice_to_genotype(SPEC, choice)
    assert [c.type for c in g.cells] == ["erb", "rfdb"]
    assert g.cells[0].ops == ("sep_conv3x3", "conv3x3") and g.cells[0].attention.type == "pa"
    assert g.cells[1].ops[2] == "sep_conv3x3"


def test_model_space_has_a_layer_choice_per_slot():
    pytest.importorskip("nni", reason="NNI is an optional peer (pip install -e '.[nni]')")
    import torch
    from nni.nas.nn.pytorch import LayerChoice

    from searchers.differentiable.supernet import SuperNet
    from searchers.tools.nni_peer import build_model_space

    space = build_model_space(SPEC)
    labels = {m.label for m in space.modules() if isinstance(m, LayerChoice)}
    ours = {op.slot for op in SuperNet(SPEC).mixed_ops()}
    assert labels == ours
    assert space(torch.rand(1, 3, 16, 16)).shape == (1, 3, 32, 32)
