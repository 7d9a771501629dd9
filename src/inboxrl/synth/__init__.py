"""The deterministic synthetic inbox generator (emails with distractors, scenarios, the embedded default dataset)."""
