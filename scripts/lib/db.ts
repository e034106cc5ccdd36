/* Connections (postgres.js) and connection-string helpers. */
import postgres from 'postgres';

export type Sql = postgres.Sql;

export function connect(url: string, opts: postgres.Options<{}> = {}): Sql {
  return postgres(url, {
    onnotice: () => {},
    max: 4,
    idle_timeout: 5,
    connect_timeout: 30,
    ...opts,
  });
}

/** The same server, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}
