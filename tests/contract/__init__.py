"""Tests of what the project publishes: docs/asyncapi.json and the generated docs, the metrics
table of docs/operations.md, the deployment files (compose, alerts, Grafana), and the house
plan (no import cycles, no arrow back up). Vendored schemas they validate against in data/."""
