"""inboxrl: multi-turn GRPO for tool-using LLM agents (ART-E email search on SQLite FTS5)."""

__version__ = "0.1.0"
