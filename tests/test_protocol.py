"""NIJ protocol rules (``evaluate/_protocol.py``): refusals name parameters, not flags."""

from __future__ import annotations

import pytest

from placecast.evaluate import NIJ, nij_plan
from placecast.exceptions import ParameterError, render_message


def test_nij_plan_gives_the_challenge_origin_and_windows():
    origins, horizons = nij_plan(" nij ", region="districts.shp")
    assert origins == ["2017-03-01"] and horizons == list(NIJ.horizons)


@pytest.mark.parametrize(("kwargs", "message", "params"), [
    ({"protocol": "kaggle", "region": "r.shp"}, "the only preset is 'nij'", ("protocol",)),
    ({"protocol": "nij", "region": "r.shp", "horizon": "7d", "start": "2017-01-01"},
     "drop `start`, `horizon`", ("start", "horizon", "protocol")),
    ({"protocol": "nij"}, "police-district union", ("region", "protocol")),
])
def test_nij_plan_refuses_settings_the_preset_fixes(kwargs, message, params):
    protocol = kwargs.pop("protocol")
    with pytest.raises(ParameterError, match=message) as info:
        nij_plan(protocol, **kwargs)
    assert info.value.params == params
    assert "--" not in str(info.value)
    flags = render_message(info.value, lambda name: "--" + name)
    assert "--protocol" in flags and all(f"`{p}`" not in flags for p in params)
