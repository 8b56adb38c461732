"""Hypothesis settings shared by the fuzz suites (each beside the module it fuzzes)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values any field of a record or message may take, the odd ones included.
unicode_text = st.text(max_size=40)  # every code point but surrogates: emoji, RTL, combining marks, NUL
lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
huge_text = st.integers(min_value=100_000, max_value=2_000_000).map(lambda n: "\u00e9x" * (n // 2))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4), max_leaves=8
)
