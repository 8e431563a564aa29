"""Trainables: the data loading, models and training loops that Ray Tune runs as trials."""
