"""Tests of engine/core, the pure rules, with the operator's files they run on (engine/data):
decide, merge, SLA, calendar, directives, figures, placement, routing, the policy file, and
the loop's properties over random commands."""
