"""Experiment drivers: paper tables, probes, benchmarks, reproduction."""
