"""Settings by section: the flags, environment variables and YAML keys of every command (see docs/architecture.md)."""
