"""Wiring: turn a TrainConfig into the data, environment and model a run needs."""
