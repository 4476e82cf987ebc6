# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench docs broker worker clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## broker + worker + simulator on the embedded broker, then a summary
	$(BIN)/zhida demo $(ARGS)

test: $(STAMP)  ## lint, unit tests, integration tests against the embedded broker
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)  ## throughput and latency baseline; writes docs/benchmarks.md
	$(BIN)/python -m bench.run $(ARGS)
	$(BIN)/python -m bench.directives
	$(BIN)/python -m bench.storm
	$(BIN)/python -m bench.signed

.PHONY: bench-directives
bench-directives: $(STAMP)  ## directive to 1,031 streets: fan-out, acks, GET status; writes docs/benchmarks-directives.md
	$(BIN)/python -m bench.directives $(ARGS)

.PHONY: bench-storm
bench-storm: $(STAMP)  ## alarm storm of 500 from 300 sensors, placement cost, address accuracy; writes docs/benchmarks-intake.md
	$(BIN)/python -m bench.storm $(ARGS)

.PHONY: bench-signed
bench-signed: $(STAMP)  ## engine throughput with signature checks against without; writes docs/benchmarks-signing.md
	$(BIN)/python -m bench.signed $(ARGS)

.PHONY: bench-crash
bench-crash: $(STAMP)  ## soak: SIGKILL the worker under load, check every output (bench/crashload.py)
	$(BIN)/python -m bench.crashload --duration 300 --kill-every 20 --rate 100 $(ARGS)

.PHONY: bench-cityday-short
bench-cityday-short: $(STAMP)  ## the short city day alone (2 workers, one kill; part of make test): CITYDAY_SEED=n reruns one day
	$(BIN)/python -m pytest -p no:cacheprovider -s tests/integration/test_cityday_short.py $(ARGS)

.PHONY: bench-cityday
bench-cityday: $(STAMP)  ## a day of Chongqing at 100x on 3 workers, one SIGKILLed every 180 s; figures vs a recount; writes docs/benchmarks-cityday.md
	$(BIN)/python -m bench.cityday $(ARGS)

.PHONY: bench-failover
bench-failover: $(STAMP)  ## SIGKILL one of three workers at 0/10k/300k open cases, standby replicas 0/1/2; writes docs/benchmarks-failover.md
	$(BIN)/python -m bench.failover $(ARGS)

.PHONY: bench-capacity
bench-capacity: $(STAMP)  ## intake rate 1, 2 and 3 workers carry with intake→dispatch p99 under 1 s; writes docs/benchmarks-capacity.md
	$(BIN)/python -m bench.capacity $(ARGS)

.PHONY: bench-scale
bench-scale: $(STAMP)  ## open cases, RSS, changelog, restart at 100k/300k/1M; writes docs/benchmarks-scale.md
	$(BIN)/python -m bench.scale $(ARGS)

.PHONY: bench-timers
bench-timers: $(STAMP)  ## SLA timers: lateness with 1M armed, a 20k burst, SIGKILL; writes docs/benchmarks-timers.md
	$(BIN)/python -m bench.timers $(ARGS)

.PHONY: bench-replay
bench-replay: $(STAMP)  ## zhida replay's core on a synthetic month (1,000,000 inputs, 300,000 cases; --scale): inputs/s, memory; writes docs/benchmarks-replay.md
	$(BIN)/python -m bench.replay $(ARGS)

.PHONY: bench-profile
bench-profile: $(STAMP)  ## py-spy on the worker at saturation and at 200/s, ms by hop (merging on/off); writes docs/benchmarks-profile.md
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench.profile $(ARGS)

docs: $(STAMP)  ## regenerate docs/schemas/*.json and docs/lifecycle.md
	$(BIN)/python -m engine.docgen

broker: $(STAMP)
	$(BIN)/zhida broker

worker: $(STAMP)
	$(BIN)/zhida worker

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
