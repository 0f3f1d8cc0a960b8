-- The trigger function shared with Go (POLYGLOT.md §2.1). Created only when no function of this
-- name exists anywhere in the database; never replaced or dropped.
CREATE FUNCTION notify_event() RETURNS trigger AS $$
DECLARE
    data JSON;
    channel TEXT;
BEGIN
    IF (TG_OP = 'DELETE') THEN
        data = json_build_object('id', OLD.id, 'rid', OLD.rid, 'status', OLD.status);
    ELSE
        data = json_build_object('id', NEW.id, 'rid', NEW.rid, 'status', NEW.status);
    END IF;
    IF TG_TABLE_NAME IN ('job', 'worker') THEN
        channel = TG_TABLE_NAME;
    ELSE
        channel = 'job_archive';
    END IF;
    -- pg_notify as the condition of an empty IF: PL/pgSQL evaluates a plain expression on its fast
    -- path, where PERFORM runs a whole query through SPI (3.9 -> 2.6 us per row measured; it fires
    -- for every inserted, claimed and archived job). Same call, same arguments, same effect.
    IF pg_notify(channel, data::text) IS NULL THEN
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
