/*
 * analyze_grown_tables: ANALYZEs each of p_tables that has more than doubled in pages since its
 * statistics were taken, or that has pages while its statistics count no rows; process_claimed
 * calls it between the dimension upserts and the fact insert. The facts' foreign-key checks are
 * planned once per session from those statistics: a small dimension last analyzed with few or
 * no rows (or none live: after a delete) looks empty, its checks are planned as sequential
 * scans, and each check then reads every row. Growth is geometric, so a table is
 * analyzed about log2(rows) times in its life. SKIP_LOCKED: never waits for autovacuum or
 * another batch; tables the caller may not analyze are left alone. Returns how many it analyzed.
 */
create or replace function spectrum.analyze_grown_tables(p_tables regclass[])
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_table regclass;
  v_analyzed integer := 0;
begin
  for v_table in
    select c.oid::regclass
      from pg_catalog.pg_class c
     where c.oid = any (p_tables)
       and (pg_catalog.pg_relation_size(c.oid)
              > 2 * greatest(c.relpages, 0)::bigint * pg_catalog.current_setting('block_size')::bigint
            or c.reltuples <= 0 and pg_catalog.pg_relation_size(c.oid) > 0)
       and pg_catalog.pg_has_role(c.relowner, 'USAGE')
     order by c.oid
  loop
    execute pg_catalog.format('analyze (skip_locked) %s', v_table);
    v_analyzed := v_analyzed + 1;
  end loop;
  return v_analyzed;
end
$$;

comment on function spectrum.analyze_grown_tables(regclass[]) is 'ANALYZEs each table that has more than doubled in pages since its last statistics (without waiting for a lock); returns how many. Called by each batch for the dimensions.';

revoke all on function spectrum.analyze_grown_tables(regclass[]) from public;
