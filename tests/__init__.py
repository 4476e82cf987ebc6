"""The tests, laid out as the code is.

- core/, runtime/, tools/: tests of engine/core (with engine/data, the operator's files),
  engine/runtime (with handlers/) and engine/tools (with the bench pages), no broker needed;
- contract/: what the project publishes (AsyncAPI, generated docs, metrics table, deployment
  files) and the house plan;
- integration/: against a real embedded broker and real worker processes;
- support/: the helpers and fixtures they share (the fixtures registered by conftest.py);
- data/: the policy files of the integration tests' workers and of the short city day;
  core/data/addresses.tsv: the placement set (bench/placement.py and bench/storm.py
  read it at that path).

The crash soak's load, reader and checks are bench/crashload*.py (``make bench-crash``); the
integration tests test_crash.py, test_crash_workers.py and test_cityday_short.py run them.
"""
