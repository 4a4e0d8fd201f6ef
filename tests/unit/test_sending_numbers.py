"""A configuration's numbers as a send reads them: one made at a time, the rest left as JSON."""

from __future__ import annotations

import json

import pytest

from bridge.db.sms_configs import LazyNumbers

RAW = json.dumps(
    [
        {"number": "+15550100001", "type": "long_code", "mps": None, "channels": ["sms"]},
        {"number": "+15550100002", "type": "toll_free", "mps": 25, "channels": ["sms", "whatsapp"]},
    ]
)


def test_numbers_read_as_a_mapping_in_the_configurations_order() -> None:
    numbers = LazyNumbers(RAW)
    assert list(numbers) == ["+15550100001", "+15550100002"]
    assert len(numbers) == 2
    assert "+15550100002" in numbers and "+15550100009" not in numbers
    second = numbers["+15550100002"]
    assert (second.type, second.mps, second.channels) == ("toll_free", 25, {"sms", "whatsapp"})
    assert numbers["+15550100002"] is second, "made once"
    assert numbers.get("+15550100009") is None
    with pytest.raises(KeyError):
        numbers["+15550100009"]
