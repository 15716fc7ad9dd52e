"""The README states facts: one description of each machine, install and test figures that name where they come
from, and no claim of a local wheel cache that a new user does not have (issue 20, item 13)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def setup_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Setup"):text.index("\n## ", text.index("## Setup") + 1)]


def test_no_microarchitecture_is_claimed_for_the_machine():
    """'Zen 3, AVX2, no bf16' in one place and 'Zen-5' in another: the CPU is named by what it reports (its
    flags), never by a guessed microarchitecture."""
    for doc in DOCS:
        found = re.findall(r"Zen[ -]?\d", doc.read_text())
        assert not found, (doc.name, found)


def test_every_bf16_claim_names_its_machine():
    """'this machine ... no bf16' contradicted a machine with avx512_bf16: a claim about bf16 names which
    EPYC it was measured on (its flags) instead of 'this machine'."""
    for doc in DOCS:
        for m in re.finditer(r"[^.]*\bno bf16\b[^.]*", " ".join(doc.read_text().split())):
            sentence = m.group(0)
            assert "this machine" not in sentence and "this CPU" not in sentence, (doc.name, sentence)


def test_setup_states_what_is_downloaded_and_the_measured_test_time():
    text = setup_section()
    assert "wheel cache" not in text and "about a minute" not in text
    assert re.search(r"\d+(\.\d+)? GB", text) and "CUDA" in text  # what a user without a cache downloads
    assert re.search(r"took [\d.]+ minutes for \d+ tests", text)  # the suite's measured duration ...
    assert "avx512_bf16" in text  # ... and the machine beside the figures
