-- The two row triggers of docs/go-interop.md §2.1, created when absent (Go re-creates the same ones).
-- {function} is the existing notify_event(), schema-qualified by the installer.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'job_notify_event'
                     AND tgrelid = (quote_ident(current_schema()) || '.job')::regclass) THEN
        CREATE TRIGGER job_notify_event BEFORE INSERT OR UPDATE ON job
            FOR EACH ROW EXECUTE FUNCTION {function}();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'job_archive_notify_event'
                     AND tgrelid = (quote_ident(current_schema()) || '.job_archive')::regclass) THEN
        CREATE TRIGGER job_archive_notify_event BEFORE INSERT ON job_archive
            FOR EACH ROW EXECUTE FUNCTION {function}();
    END IF;
END;
$$;
