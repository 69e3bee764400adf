-- test/pgtap/include/blocked.sql: included (\ir) by the pgTAP files whose
-- sessions (dblink) wait for each other's locks.

-- blocked(pid, by): wait (up to 20 s) until backend pid waits for a lock
-- held by backend "by".
CREATE FUNCTION pg_temp.blocked(pid int, blocker int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 2000 LOOP
        IF blocker = ANY (pg_blocking_pids(pid)) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END
$$;
