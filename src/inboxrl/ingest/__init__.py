"""Ingest of real mail (parquet, Maildir, mbox) into the email store."""
