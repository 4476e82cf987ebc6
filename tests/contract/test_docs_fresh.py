"""Generated docs (JSON Schemas, lifecycle diagram) must match the code."""

from engine.docgen.generate import ROOT, all_files


def test_generated_docs_are_fresh() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in all_files().items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"run `make docs` (python -m engine.docgen): stale {stale}"
