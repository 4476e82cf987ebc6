"""Tests of engine/runtime and handlers/, the worker without a broker: intake decoding, dead
letters, the store's keys and timer index, the contiguous consumer, recovery's stale state,
health, personal data, signing, the HTTP routes and the city-wide board."""
