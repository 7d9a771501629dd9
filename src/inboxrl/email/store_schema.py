"""The SQL schema of an email store (read side: :mod:`inboxrl.email.store`, which documents it;
build side: :mod:`inboxrl.email.store_build`)."""
from __future__ import annotations

FORMAT = "inboxrl-email-store"
SCHEMA_VERSION = "3"

SCHEMA_TABLES = """
CREATE TABLE store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE emails(
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    date TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_address TEXT NOT NULL COLLATE NOCASE,
    from_name TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    body_truncated INTEGER NOT NULL DEFAULT 0,
    file_name TEXT,
    content_hash INTEGER NOT NULL DEFAULT 0,
    names TEXT NOT NULL DEFAULT '',
    inboxes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE recipients(
    email_id INTEGER NOT NULL REFERENCES emails(id),
    address TEXT NOT NULL COLLATE NOCASE,
    kind TEXT NOT NULL CHECK (kind IN ('to', 'cc', 'bcc')),
    name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE inbox_members(
    inbox TEXT NOT NULL COLLATE NOCASE,
    email_id INTEGER NOT NULL REFERENCES emails(id),
    owned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE message_aliases(
    message_id TEXT NOT NULL,
    email_id INTEGER NOT NULL REFERENCES emails(id),
    PRIMARY KEY (message_id, email_id)
) WITHOUT ROWID;
CREATE TABLE inbox_keys(
    key INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE VIRTUAL TABLE emails_fts USING fts5(
    subject, body, names, inboxes, content='emails', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2', columnsize=0
);
"""

# Created after the bulk load: building an index once is much faster than keeping it up to date.
SCHEMA_INDEXES = """
CREATE INDEX idx_emails_message_id ON emails(message_id);
CREATE INDEX idx_emails_from ON emails(from_address);
CREATE INDEX idx_emails_date ON emails(date);
CREATE INDEX idx_recipients_address ON recipients(address, email_id);
CREATE INDEX idx_recipients_email ON recipients(email_id);
CREATE UNIQUE INDEX idx_inbox_members ON inbox_members(inbox, email_id);
CREATE INDEX idx_inbox_members_email ON inbox_members(email_id, inbox);
"""

SCHEMA_TRIGGERS = """
CREATE TRIGGER emails_fts_ai AFTER INSERT ON emails BEGIN
    INSERT INTO emails_fts(rowid, subject, body, names, inboxes)
        VALUES (new.id, new.subject, new.body, new.names, new.inboxes);
END;
CREATE TRIGGER emails_fts_ad AFTER DELETE ON emails BEGIN
    INSERT INTO emails_fts(emails_fts, rowid, subject, body, names, inboxes)
        VALUES ('delete', old.id, old.subject, old.body, old.names, old.inboxes);
    DELETE FROM recipients WHERE email_id = old.id;
    DELETE FROM inbox_members WHERE email_id = old.id;
    DELETE FROM message_aliases WHERE email_id = old.id;
END;
CREATE TRIGGER emails_fts_au AFTER UPDATE ON emails BEGIN
    INSERT INTO emails_fts(emails_fts, rowid, subject, body, names, inboxes)
        VALUES ('delete', old.id, old.subject, old.body, old.names, old.inboxes);
    INSERT INTO emails_fts(rowid, subject, body, names, inboxes)
        VALUES (new.id, new.subject, new.body, new.names, new.inboxes);
END;
CREATE TRIGGER inbox_members_ai AFTER INSERT ON inbox_members BEGIN
    INSERT OR IGNORE INTO inbox_keys(address) VALUES (new.inbox);
    UPDATE emails SET inboxes = ltrim(inboxes || ' m' ||
        (SELECT key FROM inbox_keys WHERE address = new.inbox)) WHERE id = new.email_id;
END;
CREATE TRIGGER inbox_members_ad AFTER DELETE ON inbox_members BEGIN
    UPDATE emails SET inboxes = trim(replace(' ' || inboxes || ' ', ' m' ||
        (SELECT key FROM inbox_keys WHERE address = old.inbox) || ' ', ' ')) WHERE id = old.email_id;
END;
"""
