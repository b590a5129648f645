"""Evaluation: metrics, scores of members, dataset shift, attacks and protocols, figures, comparison tables."""
