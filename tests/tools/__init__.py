"""Tests of engine/tools and the benchmark pages: the zhida command's clean failures, inert
operator output, the simulator, and each bench page rendered from its sample (data/bench/)."""
