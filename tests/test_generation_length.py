"""benchmarks/generation_length.py's cut: where a response stops being the start of a well-formed one (issue 35's
rejected stopping rule is measured with it, so it must cut exactly there)."""

from __future__ import annotations

import sys

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from generation_length import cut  # noqa: E402

from ovlt.scoring.chains import chain_text, well_formed  # noqa: E402


def test_a_well_formed_response_and_its_prefixes_are_never_cut():
    chain = chain_text("The bars are 3 and 5. 5 is larger.", "B")
    assert well_formed(chain)
    for end in range(len(chain) + 1):
        assert cut(chain[:end]) == chain[:end]


def test_a_response_is_cut_at_the_first_character_no_well_formed_response_starts_with():
    assert cut("ialialial 7") == "i"
    assert cut("  <thinx> 7") == "  <thin" + "x"
    chain = chain_text("3 then 5", "5")
    assert cut(chain + " and 6") == chain + " a"  # text after </answer> never becomes well formed
    assert cut("<think>a</think><think>") == "<think>a</think><t"  # a second think block, caught at its tag's 't'
