-- One durable outbox for everything delivered after a commit (package
-- outbox): back-channel logout notifications, and later mail and security
-- events. A row's kind says who delivers it; what a kind needs beyond the
-- logout columns travels in payload.
ALTER TABLE logout_outbox RENAME TO outbox;
ALTER SEQUENCE logout_outbox_id_seq RENAME TO outbox_id_seq;
ALTER INDEX logout_outbox_pkey RENAME TO outbox_pkey;
ALTER INDEX logout_outbox_sid_idx RENAME TO outbox_sid_idx;
ALTER INDEX logout_outbox_delivered_idx RENAME TO outbox_delivered_idx;

-- The default exists for the previous release, which inserts through the
-- view below during a rolling upgrade; this release always names the kind.
ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'logout';
ALTER TABLE outbox ADD COLUMN payload jsonb NOT NULL DEFAULT '{}';
ALTER TABLE outbox ALTER COLUMN sid DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN subject SET DEFAULT '';
ALTER TABLE outbox ALTER COLUMN client_id SET DEFAULT '';
ALTER TABLE outbox ALTER COLUMN uri SET DEFAULT '';

DROP INDEX logout_outbox_due_idx;
CREATE INDEX outbox_due_idx ON outbox (kind, next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL AND abandoned_at IS NULL;

-- Every statement that queues rows wakes the workers of every instance.
-- NOTIFY is delivered at commit, so no worker wakes before the rows are
-- visible, and notifications of one transaction are folded into one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('idp_outbox', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The previous release reads and writes logout_outbox; the view keeps it
-- working until every instance runs this one. Dropped in a later release.
CREATE VIEW logout_outbox AS
    SELECT id, sid, subject, client_id, uri, include_sid, reason, created_at,
           attempts, next_attempt_at, last_error, delivered_at, failed_at, abandoned_at
    FROM outbox WHERE kind = 'logout'
    WITH CASCADED CHECK OPTION;
