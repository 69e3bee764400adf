-- fingerprint.sql: every object of the moverz_batch extension and its
-- definition, one sorted line each, without OIDs, so that a fresh install
-- and an updated one can be compared with diff (test/e2e/70_upgrade.sh).
WITH ext AS (
    SELECT oid FROM pg_extension WHERE extname = 'moverz_batch'
), member AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), schemas AS (
    SELECT n.oid, n.nspname FROM pg_namespace n WHERE n.nspname IN ('moverz_batch', 'moverz_batch_internal', 'moverz_api')
), lines AS (
    SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM member
    UNION ALL
    SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n2.nspacl::text, '-')
      FROM schemas n JOIN pg_namespace n2 ON n2.oid = n.oid
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text || ' acl ' || coalesce(p.proacl::text, '-')
           || ' config ' || coalesce(p.proconfig::text, '-') || E'\n' || pg_get_functiondef(p.oid)
      FROM pg_proc p JOIN schemas n ON n.oid = p.pronamespace
     WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT 'aggregate ' || p.oid::regprocedure::text
      FROM pg_proc p JOIN schemas n ON n.oid = p.pronamespace WHERE p.prokind = 'a'
    UNION ALL
    SELECT 'relation ' || c.oid::regclass::text || ' kind ' || c.relkind::text || ' rls ' || c.relrowsecurity
           || ' force ' || c.relforcerowsecurity || ' acl ' || coalesce(c.relacl::text, '-')
           || ' options ' || coalesce(c.reloptions::text, '-')
      FROM pg_class c JOIN schemas n ON n.oid = c.relnamespace
    UNION ALL
    SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
           || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
           || ' acl ' || coalesce(a.attacl::text, '-')
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid JOIN schemas n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'constraint ' || co.conrelid::regclass::text || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
      FROM pg_constraint co JOIN schemas n ON n.oid = co.connamespace WHERE co.conrelid <> 0
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN schemas n ON n.oid = c.relnamespace
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN schemas n ON n.oid = c.relnamespace
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'view ' || c.oid::regclass::text || E'\n' || pg_get_viewdef(c.oid)
      FROM pg_class c JOIN schemas n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'policy ' || p.schemaname || '.' || p.tablename || ' ' || p.policyname || ' ' || p.permissive
           || ' ' || p.roles::text || ' ' || p.cmd || ' ' || coalesce(p.qual, '-') || ' ' || coalesce(p.with_check, '-')
      FROM pg_policies p WHERE p.schemaname IN ('moverz_batch', 'moverz_batch_internal', 'moverz_api')
    UNION ALL
    SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text
           || coalesce(' ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                 FROM pg_enum e WHERE e.enumtypid = t.oid), '')
      FROM pg_type t JOIN schemas n ON n.oid = t.typnamespace
     WHERE t.typtype IN ('e', 'c', 'd') AND (t.typrelid = 0 OR
           (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
    UNION ALL
    SELECT 'config dump ' || c.oid::regclass::text || ' ' || coalesce(e.extcondition[i], '')
      FROM pg_extension e, ext, generate_subscripts(e.extconfig, 1) AS i
      JOIN pg_class c ON true
     WHERE e.oid = ext.oid AND c.oid = e.extconfig[i]
    UNION ALL
    SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || d.description
      FROM pg_description d JOIN member m ON m.classid = d.classoid AND m.objid = d.objoid
    UNION ALL
    SELECT 'row room_types ' || r::text FROM moverz_batch.room_types r
    UNION ALL
    SELECT 'row control ' || (c.only_row, c.paused)::text FROM moverz_batch.control c
)
SELECT * FROM lines AS l(line) ORDER BY line;
