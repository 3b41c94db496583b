"""Scoring models on labelled data: metrics, threshold tuning, tables, reports."""
