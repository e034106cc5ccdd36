/*
 * batch_result: what one batch did, returned by spectrum.process_claimed. missing_months is
 * set (and nothing written) when facts need partitions that do not exist yet.
 */
do $$
begin
  if to_regtype('spectrum.batch_result') is null then
    create type spectrum.batch_result as (done integer, failed integer, superseded integer, retried integer, missing_months timestamptz[]);
  end if;
end
$$;

comment on type spectrum.batch_result is 'Counts of one batch (done, failed, superseded, retried), or the months whose fact partitions are missing.';
