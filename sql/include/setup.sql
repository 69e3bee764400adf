-- Shared set-up of the pg_regress tests (included with \i from the top directory, where pg_regress runs): the extension,
-- terse errors, and try().
CREATE EXTENSION IF NOT EXISTS moverz_batch;
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- try(sql): 'ok', or 'SQLSTATE: message' with uuids masked.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM,
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;
