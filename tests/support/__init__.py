"""What the tests share, imported by test modules (never from a conftest or another test
module): helpers.py (command builders, codes, ``world_with``), broker.py (``Worker``,
``Collector``, ``own_broker``, ``collecting``), messages.py (intake messages for the real
broker), stores.py (the case store on memory and RocksDB), fixtures.py (the pytest fixtures,
registered by tests/conftest.py)."""
