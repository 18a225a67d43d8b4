"""The zoo reproduces the published parameter counts and the NTIRE 2022 counters exactly.

Reference figures: ``../shared/reference/architectures.md`` section 2 ("meas. ch." = the
challenge's own counter on the challenge's model files; 4 decimals where it gives them).
"""

from __future__ import annotations

import pytest

from proxies.complexity import count_macs, count_ntire2022, count_params
from search_space import build_model
from search_space.zoo import YARDSTICK, ZOO

#            params      ch. FLOPs G  acts M     #conv  conv MACs G
PUBLISHED = {
    "imdn_ntire": (893_936, 58.5315, 154.1407, 43, 58.4308),
    "rfdn_aim2020": (433_448, 27.1026, 112.0342, 64, 27.0336),
    "rlfn_ntire": (317_218, 19.6953, 80.0452, 39, 19.6581),
    "fmen_s": (341_066, 22.2800, 72.0896, 34, 22.2800),
    "imdn_paper": (715_176, 46.5987, 122.68, 46, 46.5190),
    "rlfn_paper": (543_740, 33.9928, 126.49, 57, 33.9314),
    "fmen_s_train": (1_045_866, 68.3188, 223.08, 74, 68.2433),
}


def _decimals(x: float) -> int:
    text = repr(x)
    return len(text.split(".")[1]) if "." in text else 0


def test_every_zoo_net_has_a_reference():
    assert set(PUBLISHED) == set(ZOO)
    assert set(YARDSTICK) <= set(ZOO)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_zoo_reproduces_published_figures(name):
    params, flops_g, acts_m, n_conv, macs_g = PUBLISHED[name]
    model = build_model(ZOO[name])
    assert count_params(model) == params
    ntire = count_ntire2022(model)
    assert round(ntire.flops_g, _decimals(flops_g)) == pytest.approx(flops_g, abs=1e-9)
    assert round(ntire.activations_m, _decimals(acts_m)) == pytest.approx(acts_m, abs=1e-9)
    assert ntire.num_conv == n_conv
    assert round(count_macs(model) / 1e9, 4) == pytest.approx(macs_g, abs=1e-9)
