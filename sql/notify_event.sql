-- The trigger function shared with Go (docs/go-interop.md §2.1). Created only when no function of this
-- name exists anywhere in the database; never replaced or dropped.
-- Channel: the table's name for job and worker, else job_archive. Payload: the text of
-- json_build_object('id', id, 'rid', rid, 'status', status) (a space on both sides of each colon),
-- from NEW, or OLD for DELETE.
CREATE FUNCTION notify_event() RETURNS trigger AS $$
BEGIN
    -- It fires for every inserted, claimed and archived job, so it is one PL/pgSQL statement:
    -- pg_notify is the condition of an empty IF, evaluated as a plain expression (PERFORM would run
    -- a query through SPI: 3.9 -> 2.6 us per row), with channel and payload computed inline.
    -- The payload is json_build_object's text built by concatenation: the builder looks up how to
    -- write each of its six arguments on every call (9 % of a COPY's server time). For the contract's
    -- column types (bigint id, uuid rid, varchar status) the text is the same to the byte, NULLs
    -- included; to_json applies the builder's escaping to the status. The trigger's own time per row
    -- (EXPLAIN ANALYZE of 20,000-row inserts, 12 rounds alternating): 5.33 us with the builder and
    -- two IFs, 4.71 us with the builder inline, 3.62 us like this.
    IF pg_notify(
        CASE WHEN TG_TABLE_NAME IN ('job', 'worker') THEN TG_TABLE_NAME::text ELSE 'job_archive' END,
        CASE WHEN TG_OP = 'DELETE'
             THEN '{"id" : ' || COALESCE(OLD.id::text, 'null')
                  || ', "rid" : ' || COALESCE('"' || OLD.rid || '"', 'null')
                  || ', "status" : ' || COALESCE(to_json(OLD.status)::text, 'null') || '}'
             ELSE '{"id" : ' || COALESCE(NEW.id::text, 'null')
                  || ', "rid" : ' || COALESCE('"' || NEW.rid || '"', 'null')
                  || ', "status" : ' || COALESCE(to_json(NEW.status)::text, 'null') || '}'
        END
    ) IS NULL THEN
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
