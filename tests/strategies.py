"""Hypothesis strategies shared by the tests."""

from collections import Counter

from hypothesis import strategies as st

from benchmark.spaces import SPACES

SPACE_NAMES = sorted(SPACES)


@st.composite
def architectures(draw, space_name=None):
    """Any valid Architecture of the given (or a drawn) space."""
    sp = SPACES[space_name or draw(st.sampled_from(SPACE_NAMES))]
    n = draw(st.sampled_from(sp.n_layer_choices))
    return sp.arch(
        draw(st.sampled_from(sp.embed_dim_choices)), n,
        draw(st.lists(st.sampled_from(sp.n_head_choices), min_size=n, max_size=n)),
        draw(st.lists(st.sampled_from(sp.mlp_ratio_choices), min_size=n, max_size=n)),
        draw(st.sampled_from(sp.bias_choices)),
    )


# counts of the error-contract suite (tests/test_contract.py), printed at
# the end of the session by tests/conftest.py
CONTRACT_CASES: Counter = Counter()  # calls checked, per entry point
CONTRACT_EXAMPLES: Counter = Counter()  # generated cases, per property test
