"""Operator tools behind ``zhida case | tail | deadletters | lag | replay | precedents``
(docs/operations.md, docs/replay.md, docs/insights.md), one module a subcommand.

They talk to what a deployment already has: the worker's HTTP endpoint (``GET /cases/{id}``,
``case.py``) and the brokers (the contract's topics and the engine's consumer group:
``tail.py``, ``deadletters.py``, ``lag.py``, ``replay.py`` with its printout in
``replay_report.py``, ``precedents.py``, the one that writes: a revocation command), so an
operator needs no other client on the box.
What they share: ``common.py`` (``OpsError`` and the exit codes, inert one-line values, JSON
bodies) and ``brokers.py`` (a bounded connection to the brokers, topic metadata, end offsets).
``engine/tools/cli.py`` wires the subcommands; these modules do the work.

Every failure an operator can cause (a wrong address, a topic that does not exist, a dead
letter that is not there) raises ``OpsError``: one line and an exit code, never a traceback.
What they print comes from other systems' messages, so every ``*_lines``/``render``/``*_json``
function is pure and returns inert text (engine/tools/inert.py: control, bidi and separator
characters escaped, raw values cut at ``inert.LIMIT``); ``tail`` masks personal data as the
worker's ``GET /cases/{id}`` does (engine/runtime/pii.py), the worker masks what ``case`` shows.
"""
