"""``python -m engine.docgen``: regenerate the generated docs (engine/docgen/generate.py)."""

from engine.docgen.generate import main

main()
