"""The shared ``name=value`` formatter of reprs."""

from sppnet._repr import format_fields


def test_format_fields_shows_each_value_by_repr_in_order():
    assert format_fields(root="/data", n=3, scales=(480.0,), on=True, t=None, x=0.5) == (
        "root='/data', n=3, scales=(480.0,), on=True, t=None, x=0.5"
    )
    assert format_fields() == ""
