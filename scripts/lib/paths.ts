/* Where the project's files are, independent of the working directory. */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The data directory of the cluster `npm start` runs (git-ignored). */
export const startDataDir = () => process.env.SPECTRUM_PGDATA ?? resolve(projectRoot, '.pgdata');
