"""Wiring: turn the settings sections a command built into the data, environment, model and loop a run needs."""
