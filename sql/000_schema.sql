/*
 * The spectrum schema and its NOLOGIN group roles, which a DBA grants to login roles. New
 * functions are executable by PUBLIC, a default no schema can undo, so each routine's file
 * revokes it and grants what its role needs (test/security.test.ts checks every one).
 */
create schema if not exists spectrum;
comment on schema spectrum is 'spectrum-pipeline: raw_events staging, dimensions, partitioned facts, and the processing that connects them.';

do $$
declare
  v_role text;
begin
  foreach v_role in array array['spectrum_producer', 'spectrum_operator', 'spectrum_reader', 'spectrum_definer'] loop
    if not exists (select from pg_catalog.pg_roles where rolname = v_role) then
      execute format('create role %I nologin', v_role);
    end if;
  end loop;
end
$$;

comment on role spectrum_producer is 'May insert payload into spectrum.raw_events, nothing else.';
comment on role spectrum_operator is 'May read status, raw events and failures, and call spectrum.reprocess.';
comment on role spectrum_reader is 'May read the dimensions and facts.';
comment on role spectrum_definer is 'Owns the security definer routines; holds only what they need.';

revoke all on schema spectrum from public;
grant usage on schema spectrum to spectrum_producer, spectrum_operator, spectrum_reader, spectrum_definer;
