"""Tests against a real embedded broker (Tansu) and real worker processes: the session's broker,
worker and collector are fixtures (tests/support/fixtures.py), a module's own are built with
tests/support/broker.py."""
