"""Metrics of a representation: probe, collapse indicators, clusters, triplets, properties, map honesty."""
