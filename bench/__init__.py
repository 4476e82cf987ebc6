"""The benchmarks (``make bench*``): ``python -m bench.<name>`` measures and writes its page,
docs/benchmarks-*.md (``python -m bench.run``: docs/benchmarks.md).

``bench/<name>.py`` is a benchmark's entry point and its page (``render``); a long one keeps its
parts beside it (``<name>_load``, ``_read``, ``_steps``, ``_phase``, ``_check``, ``_page``). The
crash soak, bench/crashload.py (``make bench-crash``), writes no page: the crash tests in
tests/integration and bench/cityday.py run it. Shared by all:
bench/harness.py (progress, how a run ends, machine facts, metrics, the page), bench/workers.py
(engine workers, on engine/tools/process.py) and bench/workload.py (the complaints).
"""
