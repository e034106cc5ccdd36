/*
 * npm start: the embedded default. Starts (or reuses) a local PostgreSQL cluster with pg_cron
 * under .pgdata/, applies the migrations, schedules the jobs, loads a demo batch (some
 * malformed), runs one tick, prints the status and the psql command. Leaves it running.
 */
import { ClusterError, startCluster } from './lib/cluster.ts';
import { connect } from './lib/db.ts';
import { generateEvents } from './lib/events.ts';
import { migrateDatabase } from './lib/migrate.ts';
import { startDataDir } from './lib/paths.ts';
import { table } from './lib/report.ts';

const DATABASE = 'spectrum';

function port(): number {
  const raw = process.env.SPECTRUM_PORT ?? '54329';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1024 || n > 65535) {
    console.error(
      `SPECTRUM_PORT=${raw} is not a usable port: give a number from 1024 to 65535, e.g. ` +
        `SPECTRUM_PORT=54329 npm start`,
    );
    process.exit(2);
  }
  return n;
}

async function main() {
  if (process.argv.length > 2) {
    console.error(
      `npm start takes no arguments (got ${process.argv.slice(2).join(' ')}); set SPECTRUM_PORT ` +
        `or SPECTRUM_PGDATA instead`,
    );
    process.exit(2);
  }
  const cluster = await startCluster({
    dataDir: startDataDir(),
    port: port(),
    cronDatabase: DATABASE,
  });
  console.log(
    `PostgreSQL 15 with pg_cron running on 127.0.0.1:${cluster.port} (data in ${cluster.dataDir})`,
  );
  const admin = connect(cluster.url('postgres'), { max: 1 });
  const [exists] =
    await admin`select exists (select from pg_database where datname = ${DATABASE}) as e`;
  if (!exists!.e) await admin.unsafe(`create database ${DATABASE}`);
  await admin.end();

  const url = cluster.url(DATABASE);
  await migrateDatabase(url);
  const sql = connect(url, { max: 1 });
  try {
    const demo = [
      ...generateEvents({ count: 500, seed: Date.now() % 100000, malformed: 0.01, retries: 0.01 }),
    ];
    demo.push(
      { event_type: 'signup', account_id: 'abc' },
      { account_id: '8d4a8d2c-4b1e-4f7e-9c53-0a3a3c1d2e10', timestamp: '2026-13-01T00:00:00Z' },
      {
        event_type: 'click',
        account_id: '8d4a8d2c-4b1e-4f7e-9c53-0a3a3c1d2e10',
        geo: { country: 33 },
      },
    );
    await sql`insert into spectrum.raw_events
        ${sql(demo.map((payload) => ({ payload: sql.json(payload as never) })))}`;
    console.log(`loaded ${demo.length} demo events (some malformed) into spectrum.raw_events`);
    await sql`call spectrum.process_pending()`;
    console.log('ran one tick: CALL spectrum.process_pending()\n');
    console.log(table(await sql`select * from spectrum.pipeline_status`));
    const failed = await sql`select id, error_msg from spectrum.raw_events where status = 'failed'
                  order by processed_at desc limit 5`;
    console.log(`\nsome failed events:\n${table(failed)}`);
    console.log(`\nconnect: psql ${url}`);
    console.log('stop:    npm stop');
  } finally {
    await sql.end();
  }
}

main().catch((e) => {
  if (e instanceof ClusterError) console.error(`npm start: ${e.message}`);
  else console.error(`npm start failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
